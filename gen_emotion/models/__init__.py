"""Models and machines: where a model comes from and how it loads, model shapes, memory estimates, GPU checks."""
