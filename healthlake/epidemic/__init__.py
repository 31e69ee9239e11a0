"""Epidemic control: surveillance, screening, vaccination coverage, companions, risk persons, health codes.

The tables are derived tables (``healthlake.derived``) kept by ``healthlake epidemic``
(``healthlake.pipelines.epidemic``); ``healthlake.epidemic.registry`` lists them and ``docs/epidemic.md``
describes each one's grain, columns and rules.
"""
