"""Generated hostile inputs (recipes, model files) and the harness that classifies outcomes."""
