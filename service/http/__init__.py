"""The HTTP layer: the Flask app's blueprints and the plumbing they share.

api.py, admin.py, ops.py and docs.py are the blueprints; web.py holds JSON in and out, the one
error envelope and the request hooks (a WSGI wrapper); jsonbody.py and arraybody.py read
request bodies; openapi.py builds the OpenAPI document and holds our API's table of operations.

Handlers only translate HTTP: the work is ModelServer's (service.serving). May import serving,
schemas, metrics, the store and model layers and the shared modules (errors, settings, logs);
never oip, server or app, which sit above it.
"""
