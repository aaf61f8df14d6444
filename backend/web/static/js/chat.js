/*
 * The chat beside the plan editor: write the plan with Claude (docs/chat.md).
 *
 * Owns: one chat's conversation in the editor panel — the transcript (the last
 * TRANSCRIPT_TAIL messages, older ones paged in on request), the composer, the
 * running turn's live activity (the same feed items as the orchestrator's), Cancel,
 * the cost, and handing Claude's drafted plan to the editor (and the editor's text,
 * hand edits included, to Claude with every message).
 *
 * Claude's replies are markdown rendered by markdown.js, which escapes first: HTML
 * in a reply is shown as text, never interpreted.
 *
 * The editor (plan-editor.js) creates a ChatPane and gives it three hooks:
 * values() -> {title, summary, content} (the editor's text), setDraft(draft) (Claude
 * proposed a plan) and chatStarted(id) (the first message created the chat).
 * stream.js passes chat.* events to the open view, which forwards them to onChat().
 */
import { api } from "./api.js";
import { h, icon, mdBlock, patch } from "./dom.js";
import { Feed } from "./feed.js";
import { fmtCost } from "./cost.js";
import { enc, fmtDuration, fmtWhen } from "./format.js";
import { messageNotice } from "./panel.js";

const TRANSCRIPT_TAIL = 100;
const ENDS = new Set(["assistant", "error", "cancelled", "interrupted"]);
const NOTICE = { error: "error", cancelled: "info", interrupted: "info", note: "info" };

/** Activity worth showing in the chat: reads, searches, text, retries, errors (not the answer itself). */
function shownInChat(ev) {
  const d = ev.data || {};
  if (d.name === "StructuredOutput") return false; // the reply, shown as the message
  return ["tool_use", "tool_result", "text", "thinking", "api_retry", "error"].includes(ev.kind);
}

export class ChatPane {
  /** hooks: {values, setDraft, chatStarted, planId} */
  constructor(chatId, hooks) {
    this.id = chatId || null;
    this.hooks = hooks;
    this.chat = null;
    this.messages = [];
    this.seqs = new Set();
    this.olderFrom = 0; // seq of the oldest message shown (0: all shown)
    this.running = false;
    this.turn = 0;
    this.ended = new Set(); // turns whose end was seen (events can beat the POST's answer)
    this.busy = null;
    this.message = null;
    this.liveFeed = null;
    this.liveEl = h("div", { class: "chat-live" });
    this.logEl = h("div", { class: "chat-log", role: "log", "aria-live": "polite", "aria-label": "Conversation with Claude" });
    this.olderEl = h("div", { class: "chat-older" });
    this.metaEl = h("span", { class: "chat-meta" });
    this.messageEl = h("div", { "aria-live": "polite" });
    this.input = h("textarea", { id: "chat-input", name: "message", rows: "3", maxlength: "100000",
      placeholder: "Describe what you want to build. Claude reads the code, asks, and drafts the plan.",
      "aria-label": "Message to Claude" });
    this.sendBtn = h("button", { class: "btn primary", type: "submit", "data-action": "chat-send" }, "Send");
    this.cancelBtn = h("button", { class: "btn", type: "button", "data-action": "chat-cancel", hidden: true,
      title: "Cancel this turn: Claude stops answering", onclick: () => this.cancel() }, icon("stop"), "Stop");
    this.form = h("form", { class: "chat-compose", novalidate: true }, this.input,
      h("div", { class: "chat-compose-row" },
        h("span", { class: "hint" }, "Enter to send · Shift+Enter for a new line"), this.cancelBtn, this.sendBtn));
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.send();
    });
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.ctrlKey && !e.metaKey && !e.isComposing) {
        e.preventDefault();
        this.send();
      }
    });
    this.root = h("section", { class: "chat", "aria-labelledby": "chat-title" },
      h("div", { class: "chat-head" },
        h("h3", { id: "chat-title" }, "Write it with Claude"), this.metaEl),
      h("div", { class: "chat-scroll" }, this.olderEl, this.logEl, this.liveEl),
      this.messageEl, this.form);
    this.scrollEl = this.root.querySelector(".chat-scroll");
    this.renderEmpty();
    if (this.id) this.load();
  }

  renderEmpty() {
    if (this.messages.length || this.emptyShown) return;
    this.emptyShown = true; // built once: update() runs on every frame with events
    this.recentEl = h("div", { class: "chat-recent" });
    this.logEl.replaceChildren(h("div", { class: "chat-empty" },
      h("p", null, "Say what you want to change. Claude explores the code (read-only: it cannot change anything), "
        + "asks what it needs to know and drafts the plan in the editor."),
      h("p", null, "Edit the draft whenever you like: Claude sees your version with your next message."),
      this.recentEl));
    if (!this.id && !this.hooks.planId) this.loadRecent();
  }

  /** Earlier chats not saved as a plan yet, to pick up where they were left. */
  async loadRecent() {
    const el = this.recentEl;
    let chats;
    try {
      chats = (await api("GET", "/agent/chats")).chats.filter((c) => !c.plan && c.turns > 0).slice(0, 5);
    } catch (err) {
      return; // a nicety: the chat works without it
    }
    if (!chats.length || el !== this.recentEl) return;
    el.replaceChildren(h("h4", null, "Continue a chat"), h("ul", null, chats.map((c) =>
      h("li", null, h("a", { href: `#new/${enc(c.id)}` }, c.title),
        h("span", { class: "chat-sub" }, ` · ${fmtWhen(c.modified)}`)))));
  }

  async load() {
    try {
      const chat = await api("GET", `/agent/chats/${enc(this.id)}?tail=${TRANSCRIPT_TAIL}`);
      this.chat = chat;
      this.running = chat.running || chat.status === "thinking";
      this.turn = chat.turns;
      const page = chat.transcript;
      this.olderFrom = page.messages.length ? page.messages[0].seq : 0;
      for (const m of page.messages) this.addMessage(m);
      if (this.running) this.startLive(chat.turns);
      if (this.hooks.loaded) this.hooks.loaded(chat);
    } catch (err) {
      this.message = { kind: "error", text: err.status === 404 ? "This chat no longer exists: it was deleted. Send a message to start a new one." : err.message };
      if (err.status === 404) this.id = null;
    }
    this.update();
    this.scrollToEnd();
  }

  async loadOlder() {
    const before = this.olderFrom;
    const after = Math.max(0, before - 1 - TRANSCRIPT_TAIL);
    try {
      const page = await api("GET", `/agent/chats/${enc(this.id)}/transcript?after=${after}&limit=${before - 1 - after}`);
      const frag = document.createDocumentFragment();
      for (const m of page.messages) {
        if (this.seqs.has(m.seq)) continue;
        this.seqs.add(m.seq);
        frag.append(this.renderMessage(m));
      }
      this.logEl.prepend(frag);
      this.olderFrom = page.messages.length ? page.messages[0].seq : 0;
    } catch (err) {
      this.message = { kind: "error", text: err.message };
    }
    this.update();
  }

  scrollToEnd() {
    this.scrollEl.scrollTop = this.scrollEl.scrollHeight;
  }

  // ------------------------------------------------------------------ rendering
  renderMessage(m) {
    const kind = m.kind || "note";
    if (kind === "user") {
      return h("div", { class: "chat-msg user", "data-kind": "user", "data-seq": m.seq },
        h("div", { class: "chat-bubble" }, h("div", { class: "chat-text" }, m.text)),
        m.draft_edited ? h("div", { class: "chat-sub" }, "sent with your edited draft") : null);
    }
    if (kind === "assistant") {
      const bits = [];
      if (m.plan) bits.push("drafted the plan");
      if (m.cost_usd != null) bits.push(fmtCost(m.cost_usd));
      if (m.duration_ms != null) bits.push(fmtDuration(m.duration_ms));
      return h("div", { class: "chat-msg assistant", "data-kind": "assistant", "data-seq": m.seq },
        h("div", { class: "chat-who" }, "Claude"),
        mdBlock(m.text, "md chat-reply"),
        bits.length ? h("div", { class: "chat-sub" }, bits.join(" · ")) : null);
    }
    return h("div", { class: "chat-msg notice-msg", "data-kind": kind, "data-seq": m.seq },
      messageNotice({ kind: NOTICE[kind] || "info", text: m.text }));
  }

  /** The turn's activity, folded, loaded from the activity log when opened. */
  activityFor(m) {
    if (!(m.log_to > m.log_from) || m.steps === 0) return null; // nothing but the answer itself
    const feed = new Feed("chat", this.id, "No reads or searches in this turn.", `Claude's activity in turn ${m.turn}`);
    feed.loaded = true;
    const label = h("span", { class: "sum-text" },
      m.steps ? `Activity · ${m.steps} step${m.steps === 1 ? "" : "s"}` : "Activity");
    const details = h("details", { class: "chat-activity", "data-turn": m.turn }, h("summary", null, label), feed.el);
    let loaded = false;
    details.addEventListener("toggle", async () => {
      if (!details.open || loaded) return;
      loaded = true;
      try {
        const log = await api("GET", `/agent/chats/${enc(this.id)}/log?after=${m.log_from}&limit=${m.log_to - m.log_from}`);
        const shown = log.events.filter(shownInChat);
        for (const ev of shown) feed.push(ev);
      } catch (err) {
        feed.el.append(h("div", { class: "feed-note" }, `Could not load the activity: ${err.message}`));
      }
    });
    return details;
  }

  addMessage(m) {
    if (m.seq != null) {
      if (this.seqs.has(m.seq)) return;
      this.seqs.add(m.seq);
    }
    if (!this.messages.length) this.logEl.replaceChildren();
    this.messages.push(m);
    const stick = this.scrollEl.scrollHeight - this.scrollEl.scrollTop - this.scrollEl.clientHeight < 60;
    const activity = this.activityFor(m);
    if (activity) this.logEl.append(activity);
    this.logEl.append(this.renderMessage(m));
    if (stick || m.kind === "user") this.scrollToEnd();
  }

  startLive(turn) {
    this.turn = turn;
    this.liveFeed = new Feed("chat", this.id, "Claude is starting…", "Claude's activity in this turn");
    this.liveFeed.loaded = true; // live only: this turn's events arrive over the stream
    this.liveEl.replaceChildren(h("div", { class: "chat-working" },
      h("div", { class: "chat-who" }, h("span", { class: "spinner" }), " Claude is working…"), this.liveFeed.el));
  }

  endLive() {
    // the turn's activity stays reachable, folded above its reply (activityFor)
    this.liveFeed = null;
    this.liveEl.replaceChildren();
  }

  // ------------------------------------------------------------------ events
  onChat(type, data) {
    if (!this.id || data.chat_id !== this.id && !(data.chat && data.chat.id === this.id)) return;
    if (type === "chat.log" && this.liveFeed && data.turn === this.turn) {
      const ev = data.event || {};
      if (shownInChat(ev)) {
        const stick = this.scrollEl.scrollHeight - this.scrollEl.scrollTop - this.scrollEl.clientHeight < 60;
        this.liveFeed.push(ev);
        if (stick) this.scrollToEnd();
      }
    } else if (type === "chat.message") {
      const m = data.message || {};
      if (ENDS.has(m.kind)) {
        this.ended.add(m.turn);
        this.endLive();
      }
      this.addMessage(m);
      if (m.kind === "assistant" && m.plan) this.hooks.setDraft(m.plan);
      if (m.cost_usd != null && this.chat) this.chat.total_cost_usd = (this.chat.total_cost_usd || 0) + m.cost_usd;
    } else if (type === "chat.turn") {
      if (!data.active) this.ended.add(data.turn);
      this.running = Boolean(data.active) && !this.ended.has(data.turn);
      if (this.running && !this.liveFeed) this.startLive(data.turn);
      if (!data.active) this.endLive();
    } else if (type === "chat.updated" && data.chat) {
      this.chat = { ...(this.chat || {}), ...data.chat, draft: this.chat ? this.chat.draft : null };
      this.running = Boolean(data.chat.running) && !this.ended.has(data.chat.turns);
    } else if (type === "chat.deleted") {
      this.message = { kind: "error", text: "This chat was deleted." };
      this.id = null;
    }
  }

  // ------------------------------------------------------------------ actions
  async send() {
    const text = this.input.value.trim();
    if (!text || this.busy || this.running) return;
    // the chat's draft is the plan text only (the editor also holds the agent choices)
    const { title, summary, content } = this.hooks.values();
    const values = { title, summary, content };
    const hasDraft = Boolean(values.title.trim() || values.summary.trim() || values.content.trim());
    this.busy = "send";
    this.message = null;
    this.update();
    try {
      if (!this.id) {
        const body = this.hooks.planId ? { plan_id: this.hooks.planId } : hasDraft ? { draft: values } : {};
        const chat = await api("POST", "/agent/chats", body);
        this.id = chat.id;
        this.chat = chat;
        this.hooks.chatStarted(chat.id);
      }
      const answer = await api("POST", `/agent/chats/${enc(this.id)}/messages`,
        hasDraft ? { text, draft: values } : { text });
      this.input.value = "";
      if (!this.ended.has(answer.turn)) {
        this.running = true;
        if (!this.liveFeed || this.turn !== answer.turn) this.startLive(answer.turn);
      }
    } catch (err) {
      this.message = { kind: "error", text: err.message };
    }
    this.busy = null;
    this.update();
    this.scrollToEnd();
  }

  async cancel() {
    if (!this.id || this.busy) return;
    this.busy = "cancel";
    this.update();
    try {
      await api("POST", `/agent/chats/${enc(this.id)}/cancel`);
    } catch (err) {
      if (err.status !== 409) this.message = { kind: "error", text: err.message };
    }
    this.busy = null;
    this.update();
  }

  update() {
    patch(this.messageEl, JSON.stringify(this.message), () => messageNotice(this.message));
    patch(this.olderEl, String(this.olderFrom > 1), () => (this.olderFrom > 1
      ? h("button", { class: "btn small", type: "button", "data-action": "chat-older", onclick: () => this.loadOlder() },
        "Show earlier messages") : null));
    const cost = this.chat && this.chat.total_cost_usd ? `cost ${fmtCost(this.chat.total_cost_usd)}` : "";
    const state = this.running ? "answering…" : "";
    const meta = [state, cost].filter(Boolean).join(" · ");
    if (this.metaEl.textContent !== meta) this.metaEl.textContent = meta;
    const sending = this.busy === "send";
    this.sendBtn.disabled = Boolean(this.busy) || this.running;
    this.sendBtn.textContent = sending ? "Sending…" : "Send";
    this.cancelBtn.hidden = !this.running;
    this.cancelBtn.disabled = this.busy === "cancel";
    this.root.dataset.running = String(this.running);
    const placeholder = this.messages.length ? "Reply to Claude, or ask for changes to the plan."
      : "Describe what you want to build. Claude reads the code, asks, and drafts the plan.";
    if (this.input.placeholder !== placeholder) this.input.placeholder = placeholder;
  }
}
