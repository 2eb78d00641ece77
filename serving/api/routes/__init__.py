"""HTTP routes, one module per concern; :func:`serving.app.create_app` includes the routers."""
