'''Writing a plan with Claude: the chat's prompt, its answers, and the supervisor of its turns.

A chat is one Claude Code session continued turn by turn: the first turn starts
it with ``--session-id`` (chosen up front, so a turn killed before its first
event can still be resumed), every later turn ``--resume``\\ s it from the
project root with the same environment, so the same ``CLAUDE_CONFIG_DIR``
(Claude Code only finds a session from the directory and config dir it was
made in). Each run is read-only exactly like the orchestrator's: ``Read``,
``Grep`` and ``Glob`` offered, writes and Bash disallowed.

Each turn answers through ``--json-schema`` as ``{reply, plan?: {title,
summary, content}}``. A run that answers in text instead is parsed with the
orchestrator's fallback (:func:`backend.orchestrator.extract_json`); a text
with no such JSON is still a reply (a question, say) with no plan.

The user's hand edits of the draft reach Claude with the next message: the
turn's message then carries the whole current draft.

:class:`ChatService` owns every chat turn (a thread pool started and stopped
by the app's lifespan, never a request's background task). Only one turn runs
per chat; a turn that was running when the server died is marked interrupted
at the next start, and the chat continues from there.
'''

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backend.config import Settings
from backend.containment import Sandboxes
from backend.errors import Conflict, Invalid, NotFound, ShipyardError, Unavailable
from backend.events import EventBus
from backend.models import Plan, PlanCreate, PlanStatus
from backend.orchestrator import answer_text, answered_in_text, excerpt, extract_json
from backend.orchestrator_run import READ_ONLY_TOOLS, WRITE_TOOLS  # the orchestrator's tool rules
from backend.reaper import MARK, RUN_MARK
from backend.runlog import read_log
from backend.runners.claude_code import AgentEvent, ClaudeCodeRunner, RunRequest, RunResult
from backend.sandbox.spec import SandboxSpec
from backend.store import Store
from backend.store.chats import DRAFT_TITLE_MAX, Chat, ChatStore, Draft

log = logging.getLogger(__name__)

MESSAGE_MAX = 100_000
#: How much of the earlier conversation a fresh session is given when the old one is lost.
CONTEXT_CHARS = 20_000

CHAT_PROMPT = """You are helping a user write a plan for the project "{project_name}".

The plan is the input of Shipyard: when the user starts it, an orchestrator splits it into
independent tasks, and each task is carried out by its own Claude Code agent in its own copy of
the repository. Everything downstream is only as good as the plan.

How to work:
- Explore the code before you propose anything. You can only read and search it (Read, Grep,
  Glob); you cannot change files or run commands, and you do not need to.
- When the request is ambiguous, ask the user what you must know: a few clear questions at a time.
- When you know enough, propose a plan, and keep it up to date as the conversation goes on.
  A good plan says what to change and why, names the files, functions and expected behaviour,
  and says how to check the result (tests).
- The user may edit the draft plan by hand. When they have, their message shows the current
  draft: build on their version, keeping their changes unless they ask otherwise.

Answer every turn with JSON:
```json
{{"reply": "what you say to the user (markdown)",
  "plan": {{"title": "...", "summary": "...", "content": "..."}}}}
```
- "plan" is optional: include it when you propose or change the plan, always whole (never a
  diff); leave it out when the plan does not change.
- "title" is at most {title_limit} characters; "summary" is one or two sentences; "content" is the
  plan in markdown.
- If the StructuredOutput tool is available, answer by calling it with this JSON; otherwise
  answer with the JSON in a ```json block.
"""


def build_system_prompt(project_name: str) -> str:
    return CHAT_PROMPT.format(project_name=project_name, title_limit=DRAFT_TITLE_MAX)


def chat_schema() -> dict[str, Any]:
    """JSON Schema of a turn's answer, passed to ``claude --json-schema``."""
    return {
        "type": "object",
        "properties": {
            "reply": {"type": "string", "minLength": 1},
            "plan": {
                "type": "object",
                "properties": {
                    "title": {"type": "string", "minLength": 1, "maxLength": DRAFT_TITLE_MAX},
                    "summary": {"type": "string"},
                    "content": {"type": "string", "minLength": 1},
                },
                "required": ["title", "content"],
            },
        },
        "required": ["reply"],
    }


def render_draft(draft: Draft) -> str:
    parts = [f"# {draft.title.strip() or '(no title yet)'}"]
    if draft.summary.strip():
        parts.append(f"## Summary\n\n{draft.summary.strip()}")
    parts.append(f"## Plan\n\n{draft.content.strip() or '(empty)'}")
    return "\n\n".join(parts)


def build_turn_message(text: str, edited_draft: Draft | None = None, context: str | None = None) -> str:
    """The user message of one turn: the user's words, with the draft when they edited it."""
    parts = []
    if context:
        parts.append("(Our earlier conversation could not be resumed. Here is what was said, "
                     f"most recent last:)\n\n{context}")
    if edited_draft is not None:
        parts.append("I edited the draft plan by hand. This is the current draft; build on it:\n\n"
                     f"<draft>\n{render_draft(edited_draft)}\n</draft>")
    parts.append(text.strip())
    return "\n\n".join(parts) + "\n"


class ChatAnswerError(Exception):
    """A turn's answer cannot be used; the message says why and quotes it."""


@dataclass
class ChatAnswer:
    reply: str
    plan: Draft | None
    source: str  # "structured_output" | "json block" | "json object" | "text"
    notes: list[str] = field(default_factory=list)


def parse_chat_answer(structured: Any, text: str | None) -> ChatAnswer:
    """Validate a turn's answer; raise :class:`ChatAnswerError` with every problem."""
    if structured is not None:
        data, source = structured, "structured_output"
    else:
        found = extract_json(text or "")
        if found is not None and isinstance(found[0], dict) and ({"reply", "plan"} & found[0].keys()):
            data, source = found
        elif (text or "").strip():
            return ChatAnswer(reply=text.strip(), plan=None, source="text")  # type: ignore[union-attr]
        else:
            raise ChatAnswerError("Claude gave no answer.")
    if not isinstance(data, dict):
        raise ChatAnswerError("Claude's answer is not a JSON object. It answered: "
                              + excerpt(json.dumps(data, ensure_ascii=False)))
    problems: list[str] = []
    reply = data.get("reply")
    if reply is not None and not isinstance(reply, str):
        problems.append("reply is not a string")
        reply = None
    plan = None
    raw = data.get("plan")
    if raw is not None:
        if not isinstance(raw, dict):
            problems.append("plan is not an object")
        else:
            title = " ".join(str(raw.get("title") or "").split())
            content = raw.get("content")
            summary = raw.get("summary") or ""
            if not title:
                problems.append("plan title is empty")
            elif len(title) > DRAFT_TITLE_MAX:
                problems.append(f"plan title is longer than {DRAFT_TITLE_MAX} characters")
            if not isinstance(content, str) or not content.strip():
                problems.append("plan content is empty")
            if not isinstance(summary, str):
                problems.append("plan summary is not a string")
            if not problems:
                try:
                    plan = Draft(title=title, summary=summary.strip(), content=content.strip())
                except ValidationError as exc:
                    problems += [f"plan {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    if not (reply or "").strip() and plan is None and not problems:
        problems.append("the reply is empty")
    if problems:
        answer = json.dumps(data, ensure_ascii=False) if source == "structured_output" else text
        raise ChatAnswerError("Claude's answer is invalid: " + "; ".join(problems)
                              + ". It answered: " + excerpt(answer))
    if not (reply or "").strip():
        reply = "I updated the plan."
    return ChatAnswer(reply=reply.strip(), plan=plan, source=source)  # type: ignore[union-attr]


# ============================================================================ supervisor


@dataclass
class _Turn:
    number: int
    text: str
    draft_sent: Draft | None  # the edited draft shown to Claude this turn, if any
    log_from: int = 0  # the activity log's line count when the turn started
    steps: int = 0  # tool calls (other than the answer) and texts: what makes the activity worth a fold
    stop: threading.Event = field(default_factory=threading.Event)
    why: str = "cancel"  # "cancel" | "shutdown"
    future: Future[None] | None = None


def _title_of(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class ChatService:
    """Owns every chat turn of one project: starts, streams, cancels and recovers them."""

    def __init__(self, settings: Settings, store: Store, bus: EventBus,
                 runner: ClaudeCodeRunner | None = None, sandboxes: Sandboxes | None = None) -> None:
        self.settings = settings
        #: How each turn is contained (the project read-only, a private home per chat).
        self.sandboxes = sandboxes
        self.store = store
        self.bus = bus
        self.runner = runner or ClaudeCodeRunner(claude_bin=settings.claude_bin)
        self.chats = ChatStore(settings.state_path)
        self._turn_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="chat")
        self._turns: dict[str, _Turn] = {}
        self._lock = threading.RLock()
        self._closing = False

    # ------------------------------------------------------------------ lifecycle
    def startup(self) -> None:
        """Mark turns a dead server left "thinking" as interrupted (after the dispatcher's reaper)."""
        for chat in self.chats.list():
            if chat.status == "thinking" and chat.id not in self._turns:
                self._append(chat.id, "interrupted", "Interrupted by a restart: the server stopped "
                             "while Claude was answering. Send your message again to continue.",
                             turn=chat.turns)
                self.chats.update(chat.id, status="idle")
                log.warning("recovery: chat %s was answering; marked interrupted", chat.id)

    def shutdown(self, grace_s: float = 10.0) -> None:
        with self._lock:
            self._closing = True
            turns = list(self._turns.values())
        for turn in turns:
            turn.why = "shutdown"
            turn.stop.set()
        deadline = time.monotonic() + grace_s
        for turn in turns:
            if turn.future is not None:
                with contextlib.suppress(Exception):
                    turn.future.result(timeout=max(0.1, deadline - time.monotonic()))
        self._turn_pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ reading
    def describe(self, chat: Chat, brief: bool = False) -> dict[str, Any]:
        data = chat.model_dump(mode="json")
        data["running"] = chat.id in self._turns
        if chat.draft is not None and chat.draft.title.strip() and chat.title == "New chat":
            data["title"] = chat.draft.title
        if brief and chat.draft is not None:
            data["draft"] = {"title": chat.draft.title}
        data["plan"] = None
        if chat.plan_id:
            with contextlib.suppress(ShipyardError):
                plan = self.store.get_plan(chat.plan_id)
                data["plan"] = {"id": plan.id, "title": plan.title, "status": plan.status.value}
        return data

    def get(self, chat_id: str, tail: int = 100) -> dict[str, Any]:
        data = self.describe(self.chats.get(chat_id))
        data["transcript"] = self.transcript(chat_id, tail=tail)
        return data

    def list(self) -> list[dict[str, Any]]:
        return [self.describe(c, brief=True) for c in self.chats.list()]

    def transcript(self, chat_id: str, after: int = 0, limit: int = 1000,
                   tail: int | None = None) -> dict[str, Any]:
        self.chats.get(chat_id)
        page = read_log(self.chats.transcript_path(chat_id), after=after, limit=limit, tail=tail)
        return {"messages": page["events"], "next": page["next"], "total": page["total"]}

    def activity(self, chat_id: str, after: int = 0, limit: int = 1000,
                 tail: int | None = None) -> dict[str, Any]:
        self.chats.get(chat_id)
        return read_log(self.chats.log_path(chat_id), after=after, limit=limit, tail=tail)

    # ------------------------------------------------------------------ changing
    def _publish_chat(self, chat_id: str) -> None:
        with contextlib.suppress(NotFound):
            self.bus.publish("chat.updated", {"chat": self.describe(self.chats.get(chat_id), brief=True)})

    def _append(self, chat_id: str, kind: str, text: str, **data: Any) -> dict[str, Any]:
        entry = self.chats.append(chat_id, kind, text, **data)
        self.bus.publish("chat.message", {"chat_id": chat_id, "message": entry})
        return entry

    def create(self, message: str | None = None, plan_id: str | None = None,
               draft: Draft | None = None) -> tuple[dict[str, Any], bool]:
        """A new chat (optionally about an existing plan, or starting with a message).

        A plan that already has a chat gets that chat back (``created`` False):
        one conversation per plan, reopened to revise it.
        """
        if plan_id is not None:
            plan = self.store.get_plan(plan_id)
            if plan.chat_id:
                with contextlib.suppress(NotFound):
                    existing = self.chats.get(plan.chat_id)
                    if message:
                        self.send(existing.id, message)
                    return self.get(existing.id), False
            seeded = Draft(title=plan.title, summary=plan.summary, content=plan.content)
            chat = self.chats.create(plan_id=plan.id, draft=seeded, draft_edited=True, title=plan.title)
            self.store.update_plan(plan.id, chat_id=chat.id)
        else:
            has_draft = draft is not None and not draft.is_empty()
            chat = self.chats.create(draft=draft if has_draft else None, draft_edited=has_draft)
        self.bus.publish("chat.created", {"chat": self.describe(chat, brief=True)})
        if message:
            self.send(chat.id, message)
        return self.get(chat.id), True

    def update(self, chat_id: str, draft: Draft | None = None, title: str | None = None) -> dict[str, Any]:
        """Store the user's hand edits of the draft (shown to Claude with the next message)."""
        with self._lock:
            chat = self.chats.get(chat_id)
            fields: dict[str, Any] = {}
            if draft is not None and draft != chat.draft:
                fields.update(draft=draft, draft_edited=True)
            if title is not None and title.strip():
                fields["title"] = _title_of(title, DRAFT_TITLE_MAX)
            if fields:
                chat = self.chats.update(chat_id, **fields)
        self._publish_chat(chat_id)
        return self.get(chat_id)

    def _current_draft(self, chat: Chat, draft: Draft | None) -> tuple[Draft | None, bool]:
        """The draft to work from and whether Claude has yet to see it.

        A draft sent with the message wins; otherwise a linked plan that was
        edited in the plan editor since (still draft or ready) is taken up.
        """
        if draft is not None:
            if draft != chat.draft:
                return draft, True
            return chat.draft, chat.draft_edited
        if chat.plan_id:
            with contextlib.suppress(ShipyardError):
                plan = self.store.get_plan(chat.plan_id)
                if plan.status in (PlanStatus.draft, PlanStatus.ready):
                    from_plan = Draft(title=plan.title, summary=plan.summary, content=plan.content)
                    if from_plan != chat.draft:
                        return from_plan, True
        return chat.draft, chat.draft_edited

    def send(self, chat_id: str, text: str, draft: Draft | None = None) -> dict[str, Any]:
        """Post the user's message and start Claude's turn; returns at once (the turn streams)."""
        if not text.strip():
            raise Invalid("the message is empty.")
        with self._lock:
            if self._closing:
                raise Unavailable("the server is shutting down; send the message again once it is back.")
            chat = self.chats.get(chat_id)
            if chat_id in self._turns:
                raise Conflict(f"Claude is still answering in chat {chat_id}; wait for the answer or "
                               "cancel the turn first.")
            current, edited = self._current_draft(chat, draft)
            number = chat.turns + 1
            fields: dict[str, Any] = {"status": "thinking", "turns": number, "draft": current,
                                      "draft_edited": edited, "last_error": None}
            if chat.turns == 0 and chat.title == "New chat":
                fields["title"] = _title_of(text)
            self.chats.update(chat_id, **fields)
            turn = _Turn(number, text, current if edited else None, self.chats.log_lines(chat_id))
            self._turns[chat_id] = turn
            try:
                self._append(chat_id, "user", text.strip(), turn=number, draft_edited=edited,
                             draft=current.model_dump() if edited and current else None)
                turn.future = self._turn_pool.submit(self._run_turn, chat_id, turn)
            except BaseException:
                self._turns.pop(chat_id, None)
                self.chats.update(chat_id, status="idle")
                raise
        self.bus.publish("chat.turn", {"chat_id": chat_id, "turn": number, "active": True})
        self._publish_chat(chat_id)
        return {"chat_id": chat_id, "turn": number, "status": "thinking"}

    def cancel(self, chat_id: str) -> dict[str, Any]:
        self.chats.get(chat_id)
        turn = self._turns.get(chat_id)
        if turn is None:
            raise Conflict(f"no turn is running in chat {chat_id}; there is nothing to cancel.")
        turn.stop.set()
        if turn.future is not None:
            with contextlib.suppress(Exception):
                turn.future.result(timeout=30)
        return self.get(chat_id)

    def delete(self, chat_id: str) -> None:
        with self._lock:
            chat = self.chats.get(chat_id)
            if chat_id in self._turns:
                raise Conflict(f"Claude is answering in chat {chat_id}; cancel the turn first.")
            self.chats.delete(chat_id)
        if chat.plan_id:
            with contextlib.suppress(ShipyardError):
                if self.store.get_plan(chat.plan_id).chat_id == chat_id:
                    self.store.update_plan(chat.plan_id, chat_id=None)
        self.bus.publish("chat.deleted", {"chat_id": chat_id})

    def save(self, chat_id: str, draft: Draft | None = None) -> tuple[Plan, bool]:
        """Save the drafted plan: update the linked draft/ready plan, else create a draft plan.

        Returns the plan and whether it was created. A plan that has already
        been started is left alone and a new draft plan is made instead.
        """
        with self._lock:
            if draft is not None:
                self.update(chat_id, draft=draft)
            chat = self.chats.get(chat_id)
            current = chat.draft
            if current is None or current.is_empty():
                raise Conflict("there is no drafted plan yet: ask Claude to propose one, or write it "
                               "in the plan editor.")
            try:
                body = PlanCreate(title=current.title, summary=current.summary, content=current.content)
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                # the request is fine; the draft it would save is not (yet) a valid plan: a conflict
                # with the chat's state, like "no drafted plan yet" above
                raise Conflict(f"the drafted plan cannot be saved: {problems}. Fix it in the plan "
                               "editor and save again.") from None
            if chat.plan_id:
                with contextlib.suppress(NotFound):
                    plan = self.store.get_plan(chat.plan_id)
                    if plan.status in (PlanStatus.draft, PlanStatus.ready):
                        plan = self.store.update_plan(plan.id, expect=[PlanStatus.draft, PlanStatus.ready],
                                                      title=body.title, summary=body.summary,
                                                      content=body.content, chat_id=chat.id)
                        return plan, False
            plan = self.store.create_plan(body.title, body.summary, body.content, chat_id=chat.id)
            self.chats.update(chat_id, plan_id=plan.id)
        self._publish_chat(chat_id)
        return plan, True

    # ------------------------------------------------------------------ one turn
    def _run_turn(self, chat_id: str, turn: _Turn) -> None:
        try:
            self._converse(chat_id, turn)
        except Exception as exc:
            log.exception("chat %s: turn %d crashed", chat_id, turn.number)
            with contextlib.suppress(Exception):
                self._fail(chat_id, f"internal error: {type(exc).__name__}: {exc}", turn=turn.number)
        finally:
            with self._lock:
                self._turns.pop(chat_id, None)
                with contextlib.suppress(NotFound):
                    self.chats.update(chat_id, status="idle")
            self.bus.publish("chat.turn", {"chat_id": chat_id, "turn": turn.number, "active": False})
            self._publish_chat(chat_id)

    def _fail(self, chat_id: str, reason: str, **fields: Any) -> None:
        """The turn ended without an answer: say why in the transcript and on the chat."""
        self._append(chat_id, "error", reason, **fields)
        self.chats.update(chat_id, last_error=reason)

    def _request(self, chat: Chat, prompt: str, sandbox: SandboxSpec | None = None) -> RunRequest:
        settings = self.settings
        resume = chat.session_id if chat.session_started else None
        return RunRequest(
            sandbox=sandbox,
            state_dir=self._state_dir(chat) if sandbox is not None else None,
            prompt=prompt,
            cwd=settings.project_dir,
            append_system_prompt=build_system_prompt(settings.name),
            tools=list(READ_ONLY_TOOLS),
            disallowed_tools=list(WRITE_TOOLS),
            json_schema=chat_schema(),
            model=settings.orchestrator_model,
            extra_args=list(settings.orchestrator_extra_args),
            env={MARK: str(settings.state_path), RUN_MARK: f"chat-{chat.id}"},
            read_only=True,
            timeout_s=settings.orchestrator_timeout_s,
            idle_timeout_s=settings.idle_timeout_s,
            log_path=self.chats.log_path(chat.id),
            session_id=None if resume else chat.session_id,
            resume=resume,
        )

    def _run(self, chat_id: str, turn: _Turn, prompt: str, said: list[str]) -> RunResult:
        chat = self.chats.get(chat_id)
        started = [chat.session_started]

        def on_event(event: AgentEvent) -> None:
            if event.kind == "text" and isinstance(event.data.get("text"), str):
                said.append(event.data["text"])
            if event.kind == "text" or (
                    event.kind == "tool_use" and event.data.get("name") != "StructuredOutput"):
                turn.steps += 1
            if event.kind == "init" and not started[0]:
                started[0] = True  # from now on the session exists: later turns resume it
                self.chats.update(chat_id, session_started=True)
            self.bus.publish("chat.log", {"chat_id": chat_id, "turn": turn.number,
                                          "event": event.to_dict()})

        sandbox = None
        if self.sandboxes is not None:
            runner_env = self.runner.base_env if self.runner.base_env is not None else os.environ
            contained = self.sandboxes.for_agent("claude", cwd=self.settings.project_dir,
                                                 home=self._state_dir(chat) / "claude", env=runner_env,
                                                 read_only=True)
            if contained.refusal:
                return RunResult.not_started(contained.refusal)
            sandbox = contained.spec
        return self.runner.run(self._request(chat, prompt, sandbox), on_event=on_event, cancel=turn.stop)

    def _state_dir(self, chat: Chat) -> Path:
        """The chat's private agent home (its Claude Code sessions live there when sandboxed)."""
        return self.settings.state_path / "agents" / f"chat-{chat.id}"

    def _converse(self, chat_id: str, turn: _Turn) -> None:
        chat = self.chats.get(chat_id)
        said: list[str] = []
        result = self._run(chat_id, turn, build_turn_message(turn.text, turn.draft_sent), said)
        resumed = chat.session_started
        if (resumed and not (result.ok or result.num_turns or result.outcome == "cancelled")
                and not turn.stop.is_set()):
            # the session is gone (another config dir, deleted files): a fresh one gets the gist
            log.warning("chat %s: could not resume session %s (%s); starting a new one",
                        chat_id, chat.session_id, result.reason)
            self._append(chat_id, "note", f"The earlier Claude session could not be resumed "
                         f"({result.reason}); continuing in a new one with the conversation so far.",
                         turn=turn.number)
            self.chats.update(chat_id, session_id=str(uuid.uuid4()), session_started=False)
            said.clear()
            prompt = build_turn_message(turn.text, turn.draft_sent or self.chats.get(chat_id).draft,
                                        context=self._context(chat_id))
            result = self._run(chat_id, turn, prompt, said)
        chat = self.chats.get(chat_id)
        if result.cost_usd:
            chat = self.chats.update(chat_id, total_cost_usd=round(chat.total_cost_usd + result.cost_usd, 6))
        stats = {"turn": turn.number, "cost_usd": result.cost_usd, "duration_ms": result.duration_ms,
                 "num_turns": result.num_turns,
                 # the turn's activity: lines log_from+1 .. log_to of the activity log
                 "log_from": turn.log_from, "log_to": self.chats.log_lines(chat_id), "steps": turn.steps}
        if turn.stop.is_set() or result.outcome == "cancelled":
            if turn.why == "shutdown":
                self._append(chat_id, "interrupted", "Interrupted: the server stopped while Claude was "
                             "answering. Send your message again to continue.", **stats)
            else:
                self._append(chat_id, "cancelled", "Cancelled: Claude stopped answering.", **stats)
            return
        in_text = answered_in_text(result)
        if not result.ok and not in_text:
            self._fail(chat_id, f"Claude could not answer: {result.reason}", **stats)
            return
        try:
            answer = parse_chat_answer(result.structured_output, answer_text(said, result))
        except ChatAnswerError as exc:
            self._fail(chat_id, str(exc), **stats)
            return
        with self._lock:
            chat = self.chats.get(chat_id)
            fields: dict[str, Any] = {}
            if answer.plan is not None:
                fields.update(draft=answer.plan, draft_edited=False)
            elif turn.draft_sent is not None and chat.draft == turn.draft_sent:
                fields["draft_edited"] = False  # Claude has seen the user's version now
            if fields:
                self.chats.update(chat_id, **fields)
            self._append(chat_id, "assistant", answer.reply,
                         plan=answer.plan.model_dump() if answer.plan else None,
                         source=answer.source, **stats)

    def _context(self, chat_id: str) -> str:
        """The end of the conversation as plain text, for a session that had to start over."""
        lines = []
        for message in self.transcript(chat_id, tail=60)["messages"]:
            if message.get("kind") in ("user", "assistant"):
                who = "User" if message["kind"] == "user" else "You"
                lines.append(f"{who}: {message.get('text', '')}")
        text = "\n\n".join(lines[:-1])  # the last one is this turn's message, sent as usual
        return text[-CONTEXT_CHARS:]


__all__ = ["ChatAnswer", "ChatAnswerError", "ChatService", "build_system_prompt", "build_turn_message",
           "chat_schema", "parse_chat_answer"]
