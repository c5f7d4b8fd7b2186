"""The web faces: thin blueprints that parse, call the domain and render."""
