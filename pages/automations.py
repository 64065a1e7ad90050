"""Automations: the definitions, their versions (any two compared), triggers and next fire times; run now
(operators) and enable/disable (admins)."""

from __future__ import annotations

import difflib

import pandas as pd
import streamlit as st

from core.links import definition_link, query_params_dict, run_link
from core.markup import md_escape, md_repr, md_value
from core.periods import last_param
from engine.commands import AUTOMATION_REFUSALS, preview_run_now, run_now, set_enabled
from store.definitions import read_definition_rejections, read_definition_versions, read_definitions
from ui.preview import render_preview
from ui.runtime import current_engine
from ui.session import actor_or_stop
from ui.tables import show_table
from ui.text import fmt_duration, fmt_time, show_command_result

engine = current_engine()
actor = actor_or_stop()
params = query_params_dict(st.query_params)
st.title("Automations")
st.caption("Each automation is a versioned definition: every distinct content is a new version, and each run "
           "pins the version it ran.")
show_command_result("automations_result")

with engine.ws.read() as conn:
    rows = read_definitions(conn)
    rejections = read_definition_rejections(conn)
now = engine.clock.now()


def _trigger(definition_id: str, version: int) -> tuple[str, str]:
    """The trigger in words ("Mondays 06:00 UTC") and when it next fires, with how long until then."""
    d = engine.catalog.get(definition_id, version)
    if d.trigger.kind != "schedule":
        return d.trigger.describe(), "on its trigger"
    nxt = d.trigger.cron_trigger().get_next_fire_time(None, now)
    return d.trigger.describe(), (f"{nxt:%a %d %b %Y %H:%M} UTC (in {fmt_duration((nxt - now).total_seconds())})"
                                  if nxt else "never again")


table = []
for r in rows:
    described, nxt = _trigger(r["definition_id"], r["latest_version"])
    table.append({"Automation": definition_link(r["definition_id"]).href, "Title": r["title"],
                  "Trigger": described, "Next fire": nxt if r["enabled"] else "disabled",
                  "Version": r["latest_version"], "Enabled": r["enabled"]})
if not table:
    st.info("No automations loaded. Put definition files (YAML) in the definitions folder; the engine loads them "
            "on start.")
    st.stop()
show_table(pd.DataFrame(table),
             column_config={"Automation": st.column_config.LinkColumn(display_text=r"id=([^&]*)")})
if rejections:
    with st.expander(f"Rejected definition files ({len(rejections)})", icon=":material/error:"):
        for rej in rejections:
            st.markdown(f"**{md_escape(rej['source_path'])}** · {fmt_time(rej['rejected_at'])}")
            st.code(rej["errors"], wrap_lines=True)

# The remote systems actions reach (integrations folder): where each points, and which secrets are unset here.
loaded = engine.integrations


def _secrets_said(integration_id: str, names: tuple[str, ...]) -> str:
    unset_here = loaded.unset_names.get(integration_id)
    if unset_here:
        return "not set here: " + ", ".join(unset_here)
    return "set" if names else "none needed"


if loaded.taken or loaded.errors:
    unset = sum(len(v) for v in loaded.unset.values())
    label = f"Integrations ({len(loaded.taken)})" + (f" · {unset} secret{'s' if unset != 1 else ''} not set"
                                                     if unset else "")
    with st.expander(label, icon=":material/hub:"):
        show_table(pd.DataFrame([{"Actioner": spec.actioner, "Reaches": spec.described(),
                                  "At once per run": spec.concurrency,
                                  "Default alerts": ", ".join(spec.alerts.on) if spec.alerts else "",
                                  "Secrets": _secrets_said(spec.id, spec.env_names())}
                                 for _, spec, _ in loaded.taken]))
        for error in loaded.errors:
            st.error(md_escape(error))

ids = [r["definition_id"] for r in rows]
chosen = last_param(params, "id")
if chosen and chosen not in ids:
    st.error(f"There is no automation {md_repr(chosen)}. Known: {', '.join(ids)}.")
    chosen = None
picked = st.selectbox("Automation", [None, *ids], index=[None, *ids].index(chosen),
                      format_func=lambda d: d or "Choose one to see its versions and act on it")
if picked != chosen:
    st.query_params.from_dict(definition_link(picked).params if picked else {})
    st.rerun()
if not chosen:
    st.stop()

row = next(r for r in rows if r["definition_id"] == chosen)
with engine.ws.read() as conn:
    versions = read_definition_versions(conn, chosen)
numbers = [v.version for v in versions]
st.subheader(f"{row['title']}")
left, right = st.columns(2)
may_run, may_manage = actor.may("run_now"), actor.may("manage_definitions")
confirming = st.session_state.get("automations_confirm") == chosen
if left.button("Run now", type="primary", disabled=not may_run or not row["enabled"] or confirming,
               help="Needs the operator role" if not may_run else None if row["enabled"] else "Disabled"):
    st.session_state["automations_confirm"] = chosen
    st.rerun()
if confirming:
    # Asked first, naming what it would act on now: a run acts on every subject it matches, at once.
    preview = preview_run_now(engine, chosen)
    with st.container(border=True):
        st.markdown(f"**Run {md_escape(row['title'])} ({md_escape(chosen)}) now?** It would match "
                    f"**{preview.subjects:,}** {md_escape(preview.subject_kind)} now and, for each, "
                    f"{md_escape(', '.join(preview.actions))}. The run is recorded as started by you, so you will "
                    "not be able to approve its items (four eyes).")
        yes, no, _ = st.columns([2, 1, 4])
        if yes.button(f"Yes, run it on {preview.subjects:,} {preview.subject_kind}", type="primary",
                      key="run-now-confirm"):
            st.session_state.pop("automations_confirm", None)
            try:
                made = run_now(engine, actor, chosen, background=True)
                st.session_state["automations_result"] = ("ok", "Started " + (", ".join(made)
                                                                             or "no run (nothing fired)"))
                st.session_state["automations_runs"] = made
            except AUTOMATION_REFUSALS as exc:
                st.session_state["automations_result"] = ("error", md_escape(exc))
            st.rerun()
        if no.button("Cancel", key="run-now-cancel"):
            st.session_state.pop("automations_confirm", None)
            st.rerun()
for made_run in st.session_state.pop("automations_runs", []):
    rl = run_link(made_run)
    left.page_link(rl.page, query_params=rl.params, label=f"Open {made_run}", icon=":material/play_circle:")
label = "Disable" if row["enabled"] else "Enable"
if right.button(label, disabled=not may_manage, help=None if may_manage else "Needs the admin role"):
    try:
        set_enabled(engine, actor, chosen, not row["enabled"])
        st.session_state["automations_result"] = ("ok", f"{chosen} {label.lower()}d.")
    except AUTOMATION_REFUSALS as exc:
        st.session_state["automations_result"] = ("error", md_escape(exc))
    st.rerun()
if not may_run:
    left.caption(f"Run now needs the operator role; {actor.member_id} has {', '.join(sorted(actor.roles))}.")
if not may_manage:
    right.caption("Enabling and disabling needs the admin role.")
render_preview(engine, actor, chosen)


def _version(key: str, default: int) -> int:
    text = last_param(params, key)
    try:
        value = int(text) if text else default
    except ValueError:
        value = default
    if value not in numbers:
        st.warning(f"{chosen} has no version {md_value(text)}; showing version {default}.")
        return default
    return value


version = _version("version", numbers[-1])
show_table(pd.DataFrame([{"Version": v.version, "Content hash": v.content_hash, "By": v.authored_by}
                           for v in versions]))
vcol, ccol = st.columns(2)
shown = vcol.selectbox("Version", numbers, index=numbers.index(version))
compare_default = _version("compare", numbers[0]) if last_param(params, "compare") else None
compare = ccol.selectbox("Compare with", [None, *numbers], index=[None, *numbers].index(compare_default),
                         format_func=lambda v: "—" if v is None else f"version {v}")
if (shown, compare) != (version, compare_default):
    st.query_params.from_dict(definition_link(chosen, shown, compare).params)
    st.rerun()
text = {v.version: v.content for v in versions}
if compare and compare != shown:
    diff = "".join(difflib.unified_diff(text[compare].splitlines(True), text[shown].splitlines(True),
                                        f"{chosen} v{compare}", f"{chosen} v{shown}"))
    st.code(diff or "(identical)", language="diff")
else:
    st.code(text[shown], language="yaml")
