"""A trained folder put to use: the loaded predictor, the notebook API, the HTTP server, model export and its card."""
