"""A load-benchmark session that speaks Streamlit's own protocol: protobuf over ``/_stcore/stream``.

It sends what the browser's frontend sends (captured from chromium for this app and Streamlit 1.67): on a
page load, a new websocket and a ``rerun_script`` with the URL's page and query string; a sidebar click, a
``rerun_script`` for that page's hash; a button, a ``rerun_script`` with its trigger; the run page's live
figures, a fragment ``rerun_script`` every interval the server's ``auto_rerun`` names. The session cookie
the app gives after sign-in (a script in an ``st.html``) goes with every later page load, as the browser's.

"Rendered" here is the server's side of it: an interaction is done when the script run it caused has
finished and every element has arrived (``script_finished``), checked for the page's heading. What a
browser adds on top — fetching the cached static files, booting the frontend, drawing — is not in it; the
browser sessions of ``load_browser`` measure that. What this client costs is a few percent of one core,
so twenty of them leave the cores to the server, as twenty members' own computers would.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException
from websockets.typing import Origin, Subprotocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.load_flow import BIG, EXPECTED_ALERTS, Flow, InteractionFailed, Sample, Shared  # noqa: E402

COOKIE = re.compile(r"runledger_session=([A-Za-z0-9_\-]+)")
IDS = {"run?id=": re.compile(rb"run\?id=(RUN-\d+)"), "item?id=": re.compile(rb"item\?id=(RUN-\d+-\d+)")}
FINISHED, COMPILE_ERROR, FRAGMENT_FINISHED = 0, 1, 3


@dataclass
class View:
    """What one script run (and any rerun it asked for) sent: enough to check it and to act on it."""

    headings: list[str] = field(default_factory=list)
    markdown: list[str] = field(default_factory=list)
    widgets: dict[str, str] = field(default_factory=dict)  # label → widget id (buttons, text inputs)
    errors: list[str] = field(default_factory=list)
    tables: list[bytes] = field(default_factory=list)
    cookie: str | None = None


class Tab:
    """One browser tab: its websocket, the page it is on, and the live fragment's refreshes."""

    def __init__(self, flow: ProtocolFlow) -> None:
        self.flow = flow
        self.ws: ClientConnection | None = None
        self.reader: asyncio.Task[None] | None = None
        self.refresher: asyncio.Task[None] | None = None
        self.pages: dict[str, str] = {}  # url path → page script hash, from the navigation message
        self.page_hash, self.query = "", ""  # the page on screen and its URL's query string
        self.view = View()  # the page's last script run (not its fragment refreshes)
        self.sink = self.view  # where arriving elements go: the run in progress
        self.target = ""  # the big run's label, when this tab shows it
        self.waiting: tuple[set[int], asyncio.Future[int]] | None = None
        self.auto: tuple[float, str] | None = None  # (interval, fragment id) the page asked to rerun

    async def open(self, cookie: str | None) -> None:
        parts = urlsplit(self.flow.url)
        self.ws = await connect(f"ws://{parts.netloc}/_stcore/stream", origin=Origin(self.flow.url),
                                subprotocols=[Subprotocol("streamlit")], max_size=None,
                                additional_headers={"Cookie": f"runledger_session={cookie}"} if cookie else None)
        self.reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        for task in (self.refresher, self.reader):
            if task is not None:
                task.cancel()
        if self.ws is not None:
            await self.ws.close()

    async def rerun(self, page_name: str = "", query: str = "", page_hash: str = "",
                    widgets: tuple[tuple[str, object], ...] = (), fragment_id: str = "") -> View:
        """Send one ``rerun_script`` and wait until the run it starts has finished (through any rerun)."""
        if not fragment_id and self.refresher is not None:  # a click leaves the live figures behind
            self.refresher.cancel()
            self.refresher, self.auto = None, None
        msg = BackMsg()
        rs = msg.rerun_script
        rs.query_string, rs.page_name, rs.page_script_hash = query, page_name, page_hash
        if fragment_id:
            rs.fragment_id, rs.is_auto_rerun = fragment_id, True
        for wid, value in widgets:
            w = rs.widget_states.widgets.add()
            w.id = wid
            if value is True:
                w.trigger_value = True
            else:
                w.string_value = str(value)
        ci = rs.context_info
        ci.timezone, ci.timezone_offset, ci.locale = "UTC", 0, "en-US"
        ci.url, ci.is_embedded, ci.color_scheme = self.flow.url + "/" + page_name, False, "light"
        view = View()
        self.sink = view
        if not fragment_id:
            self.view = view
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.waiting = ({FRAGMENT_FINISHED, FINISHED} if fragment_id else {FINISHED}, done)
        assert self.ws is not None
        await self.ws.send(msg.SerializeToString())
        if await done == COMPILE_ERROR:
            view.errors.append("the script did not compile")
        if self.auto and self.refresher is None and not fragment_id:
            self.refresher = asyncio.create_task(self._refresh())
        return view

    async def _refresh(self) -> None:
        """The run page's figures every ``interval``, as the frontend reruns a ``run_every`` fragment."""
        while self.auto:
            interval, fragment = self.auto
            await asyncio.sleep(interval)
            t0 = time.time()
            try:
                view = await asyncio.wait_for(self.rerun(page_hash=self.page_hash, query=self.query,
                                                         fragment_id=fragment), self.flow.shared.timeout)
                error = " | ".join(view.errors)
            except ProtocolFlow.failures as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.flow.shared.samples.append(Sample(self.flow.n, "protocol", "live refresh", t0, time.time(),
                                                   error, self.target))
            if error:
                return

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                self._handle(ForwardMsg.FromString(raw))  # type: ignore[arg-type]
        except WebSocketException:
            pass
        if self.waiting and not self.waiting[1].done():
            self.waiting[1].set_exception(InteractionFailed("the server closed the connection"))

    def _handle(self, m: ForwardMsg) -> None:
        kind, view = m.WhichOneof("type"), self.sink
        if kind == "delta" and m.delta.WhichOneof("type") == "new_element":
            self._element(m.delta.new_element, view)
        elif kind == "navigation":
            self.pages = {p.url_pathname: p.page_script_hash for p in m.navigation.app_pages}
            self.page_hash = m.navigation.page_script_hash
        elif kind == "page_info_changed":
            self.query = m.page_info_changed.query_string
        elif kind == "auto_rerun":
            self.auto = (m.auto_rerun.interval, m.auto_rerun.fragment_id)
        elif kind == "page_not_found":
            view.errors.append(f"page not found: {m.page_not_found.page_name}")
        elif kind == "script_finished" and self.waiting and m.script_finished in self.waiting[0] | {COMPILE_ERROR}:
            if not self.waiting[1].done():
                self.waiting[1].set_result(m.script_finished)

    @staticmethod
    def _element(e: object, view: View) -> None:
        t = e.WhichOneof("type")  # type: ignore[attr-defined]
        if t == "heading":
            view.headings.append(e.heading.body)  # type: ignore[attr-defined]
        elif t == "markdown":
            view.markdown.append(e.markdown.body)  # type: ignore[attr-defined]
        elif t == "button":
            view.widgets[e.button.label] = e.button.id  # type: ignore[attr-defined]
        elif t == "text_input":
            view.widgets[e.text_input.label] = e.text_input.id  # type: ignore[attr-defined]
        elif t == "dataframe":
            view.tables.append(e.SerializeToString())  # type: ignore[attr-defined]
        elif t == "html" and (c := COOKIE.search(e.html.body)):  # type: ignore[attr-defined]
            view.cookie = c.group(1)
        elif t == "exception":
            view.errors.append(f"exception {e.exception.type}: {e.exception.message[:300]}")  # type: ignore[attr-defined]
        elif t == "alert" and e.alert.format == Alert.ERROR:  # type: ignore[attr-defined]
            if not e.alert.body.startswith(EXPECTED_ALERTS):  # type: ignore[attr-defined]
                view.errors.append(f"error alert: {e.alert.body[:300]}")  # type: ignore[attr-defined]


class ProtocolFlow(Flow):
    client = "protocol"
    failures = (InteractionFailed, asyncio.TimeoutError, WebSocketException, OSError)

    def __init__(self, n: int, url: str, shared: Shared, think: float, seed: int) -> None:
        super().__init__(n, url, shared, think, seed)
        self.tab: Tab | None = None
        self.cookie: str | None = None

    async def _load(self, page_name: str, query: str, target: str = "") -> View:
        """A page load: the old tab's websocket closes, a new one opens with the session cookie."""
        await self.close()
        self.tab = Tab(self)
        self.tab.target = target
        await self.tab.open(self.cookie)
        return await self.tab.rerun(page_name=page_name, query=query)

    @staticmethod
    def _expect(view: View, heading: str) -> View:
        if heading not in view.headings and not view.errors:
            raise InteractionFailed(f"expected {heading!r}, got headings {view.headings[:3]}")
        return view

    async def first_load(self) -> None:
        view = await self._load("", "")
        if "Member" not in view.widgets:
            raise InteractionFailed(f"no sign-in form: headings {view.headings[:3]}")

    async def submit_sign_in(self) -> None:
        assert self.tab is not None
        w = self.tab.view.widgets
        view = await self.tab.rerun(page_hash=self.tab.page_hash, widgets=(
            (w["Member"], self.member), (w["Password"], self.member), (w["Sign in"], True)))
        self._expect(view, "Runs")
        if not any(md.startswith(f"Signed in as **{self.member}**") for md in view.markdown) or not view.cookie:
            raise InteractionFailed("signed in, but no member shown or no session cookie given")
        self.cookie = view.cookie

    async def open_runs(self) -> None:
        if self.tab is None:
            raise InteractionFailed("no page open")
        self._expect(await self.tab.rerun(page_hash=self.tab.pages.get("", "")), "Runs")

    async def next_page(self) -> None:
        assert self.tab is not None
        button = self.tab.view.widgets.get("Next page ▶")
        if button is None:
            raise InteractionFailed("no Next page button on this page")
        view = await self.tab.rerun(page_hash=self.tab.page_hash, query=self.tab.query, widgets=((button, True),))
        if "⏮ First page" not in view.widgets and not view.errors:
            raise InteractionFailed("the next page did not come")

    async def open_run(self, run_id: str) -> None:
        target = BIG if run_id == self.shared.big_run else ""
        self._expect(await self._load("run", f"id={run_id}", target), f"Run {run_id}")

    async def open_item(self, item_id: str) -> None:
        self._expect(await self._load("item", f"id={item_id}"), f"Item {item_id}")

    async def back(self, run_id: str) -> None:
        await self.open_run(run_id)  # the browser reloads the run's page from its URL

    async def ids_on_page(self, prefix: str) -> list[str]:
        if self.tab is None:
            return []
        return sorted({m.decode() for t in self.tab.view.tables for m in IDS[prefix].findall(t)})

    async def problems(self) -> str:
        return " | ".join(self.tab.view.errors) if self.tab else ""

    async def recover(self) -> None:
        try:
            await asyncio.wait_for(self._load("", ""), self.shared.timeout)
        except self.failures:
            await asyncio.sleep(1)

    async def close(self) -> None:
        if self.tab is not None:
            await self.tab.close()
            self.tab = None


async def scout(url: str, shared: Shared, definition_id: str, eager: bool) -> None:
    """Find the big run's id on the Runs page filtered to its definition (the server holds the workspace, so
    the app is the only way to see it) and, when asked, watch it until it has ended. Not timed.

    ``eager`` (loaded rounds): look as soon as the run is ``fired``, so sessions can open it. Otherwise
    only on ``watch``: the coordinator asks when ``fire`` answered before the run ended (the scheduler's
    event poll dispatched the trigger event before the command's own dispatch did, and runs it)."""
    control = shared.control

    async def until(name: str) -> bool:
        while not (control / name).exists():
            if shared.stop.is_set():
                return False
            await asyncio.sleep(0.1)
        return True

    if not await until("fired" if eager else "watch"):
        return
    flow = ProtocolFlow(-1, url, shared, 0, 0)
    flow.member = "sigrid"
    try:
        await asyncio.wait_for(flow.first_load(), shared.timeout)
        await asyncio.wait_for(flow.submit_sign_in(), shared.timeout)
        while shared.big_run is None and not shared.stop.is_set():
            await asyncio.wait_for(flow._load("", f"definition={definition_id}"), shared.timeout)
            found = await flow.ids_on_page("run?id=")
            if found:
                shared.big_run = found[-1]
                (control / "big_run").write_text(shared.big_run)
            else:
                await asyncio.sleep(0.5)
        if not await until("watch"):
            return
        ended = "&".join(f"status={s}" for s in ("completed", "completed-with-failures", "failed", "cancelled"))
        while not shared.stop.is_set():
            await asyncio.wait_for(flow._load("", f"definition={definition_id}&{ended}"), shared.timeout)
            if shared.big_run in await flow.ids_on_page("run?id="):
                (control / "done").write_text(str(time.time()))
                return
            await asyncio.sleep(2)
    finally:
        await flow.close()
