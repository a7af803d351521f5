"""The compose suites: unit/ (the project as rendered, the driver against a fake engine), validate/ (the real
docker-compose binary and the Compose JSON schema), engine/ (stand-in images and the compose stack on a real Docker
Engine). Their shared rendering helpers live beside this file (compose_helpers.py), importable from all three."""
