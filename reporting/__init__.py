"""Reporting: quarterly analytics, chart and table exports, the audit committee brief and run evidence
bundles. Every export carries its provenance and is recorded in the audit log (who exported what, when)."""
