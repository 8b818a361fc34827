"""Explanations: shap attributions for LLM decisions (through the serving endpoint) and tabular models."""
