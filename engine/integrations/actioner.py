"""What the integrations' actioners share: each is one declared integration, called by the executor under its
action timeout on a thread (it reaches outside the process), with requests at once bounded per run."""

from __future__ import annotations

from core.integrations import IntegrationSpec, actioner_spec


class IntegrationActioner:
    in_process = False  # it reaches outside the process: called under the action timeout, on a thread

    def __init__(self, integration: IntegrationSpec) -> None:
        self.integration = integration
        self.spec = actioner_spec(integration)
        self.concurrency = integration.concurrency  # requests at once per run (the executor bounds them so)
