"""Models on gold: point-in-time feature tables, training with MLflow, scoring the region, monitoring.

``healthlake.ml.registry`` lists the feature tables (derived tables kept by ``healthlake features``) and the
models (``healthlake train`` / ``healthlake score``); ``docs/models.md`` describes each one. Importing this
package imports neither MLflow nor scikit-learn: the commands that need them import them.
"""
