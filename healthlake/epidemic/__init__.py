"""Epidemic control (issue 31): cases, close contacts (时空伴随), screening and risk lists.

The contract: ``docs/epidemic.md``.

``healthlake.epidemic.contacts`` finds the spatiotemporal companions of cases from location pings.
"""
