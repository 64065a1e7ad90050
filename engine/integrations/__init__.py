"""Integrations that reach real systems: declared in the integrations folder (``core.integrations``),
their secrets read from the environment (``secrets``), their actioners (``webhook``, ``smtp``) built and
their declarations versioned in the workspace (``loading``)."""
