/*
 * The plan editor (#new, #new/<chat id>, #edit/<id>): title, summary and markdown
 * text with a Write/Preview switch; saves a draft or the changes to a draft or
 * ready plan. Beside it, the chat with Claude (chat.js) drafts the plan: Claude's
 * proposals fill the form, and the form's text goes to Claude with every message.
 *
 * Owns: the form and its rules: a title is required, Ctrl+Enter saves, and
 * leaving with unsaved changes asks first (Cancel, Esc, closing the tab). A plan
 * saved from a chat is linked to it (POST /agent/chats/<id>/save), and "Save &
 * start" starts it right away.
 */
import { agentSelect, defaultAgent, defaultOrchestrator } from "./agents.js";
import { api } from "./api.js";
import { ChatPane } from "./chat.js";
import { h, mdBlock, patch } from "./dom.js";
import { enc } from "./format.js";
import { messageNotice, panelHead } from "./panel.js";
import { closePanel, isOpen, navigate } from "./router.js";
import { planRecord, setPlan } from "./store.js";
import { scheduleFlush } from "./render.js";
import { toast } from "./toast.js";

export class EditorView {
  constructor(id, chatId = null) {
    this.id = id;
    this.chatId = chatId;
    this.busy = null;
    this.message = null;
    this.loaded = !id;
    this.initial = null;
    this.titleEl = h("h2", { id: "panel-title", tabindex: "-1" }, id ? "Edit plan" : "New plan");
    this.subEl = h("div", { class: "panel-sub" }, id ? h("span", { class: "mono" }, id)
      : "Describe the change. Shipyard splits it into tasks when you start it.");
    this.title = h("input", { id: "plan-title", name: "title", type: "text", required: true, maxlength: "200",
      autocomplete: "off", placeholder: "e.g. Add a dark mode toggle" });
    this.summary = h("textarea", { id: "plan-summary", name: "summary", rows: "2", maxlength: "5000",
      placeholder: "One or two sentences: what and why" });
    this.content = h("textarea", { id: "plan-content", name: "content", class: "code", rows: "16",
      spellcheck: "false", placeholder: "## Goal\n\n## Steps\n\n- …\n\n## Done when\n\n- …" });
    this.preview = h("div", { class: "preview content-box", id: "plan-preview", hidden: true, tabindex: "0",
      role: "tabpanel", "aria-labelledby": "tab-preview" });
    this.tabWrite = h("button", { type: "button", role: "tab", id: "tab-write", "aria-selected": "true",
      "aria-controls": "plan-content", onclick: () => this.showTab("write") }, "Write");
    this.tabPreview = h("button", { type: "button", role: "tab", id: "tab-preview", "aria-selected": "false",
      "aria-controls": "plan-preview", tabindex: "-1", onclick: () => this.showTab("preview") }, "Preview");
    this.agent = agentSelect({ id: "plan-agent", name: "agent", fallback: defaultAgent() });
    this.orchestrator = agentSelect({ id: "plan-orchestrator", name: "orchestrator_agent",
      fallback: defaultOrchestrator() });
    this.perTask = h("input", { id: "plan-agent-per-task", name: "agent_per_task", type: "checkbox" });
    this.titleError = h("div", { class: "invalid", role: "alert" });
    this.messageEl = h("div", { "aria-live": "polite" });
    this.saveBtn = h("button", { class: "btn primary", type: "submit", "data-action": "save" },
      id ? "Save changes" : "Save draft");
    this.startBtn = id ? null : h("button", { class: "btn", type: "button", "data-action": "save-start",
      title: "Save the plan and start the orchestrator on it", onclick: () => this.save(true) }, "Save & start");
    const tablist = h("div", { class: "tabs", role: "tablist", "aria-label": "Plan text" }, this.tabWrite, this.tabPreview);
    tablist.addEventListener("keydown", (e) => {
      if (e.key === "ArrowRight" || e.key === "ArrowLeft") {
        e.preventDefault();
        const next = this.tab === "write" ? "preview" : "write";
        this.showTab(next);
        (next === "write" ? this.tabWrite : this.tabPreview).focus();
      }
    });
    this.form = h("form", { class: "form", novalidate: true },
      this.messageEl,
      h("div", { class: "field" }, h("label", { for: "plan-title" }, "Title"), this.title, this.titleError),
      h("div", { class: "field" }, h("label", { for: "plan-summary" }, "Summary", h("span", { class: "hint" }, "optional")),
        this.summary),
      h("div", { class: "field" }, h("label", { for: "plan-content" }, "Plan", h("span", { class: "hint" }, "markdown")),
        tablist, this.content, this.preview),
      h("div", { class: "field-row" },
        h("div", { class: "field" }, h("label", { for: "plan-agent" }, "Agent for its tasks"), this.agent),
        h("div", { class: "field" }, h("label", { for: "plan-orchestrator" }, "Orchestrator",
          h("span", { class: "hint" }, "read-only")), this.orchestrator)),
      h("label", { class: "check" }, this.perTask,
        " Let the orchestrator choose an agent for each task"),
      h("div", { class: "form-actions" }, this.saveBtn, this.startBtn,
        h("button", { class: "btn", type: "button", onclick: () => this.leave() }, "Cancel"),
        h("span", { class: "hint" }, "Ctrl+Enter to save")));
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.save();
    });
    this.form.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        this.save();
      }
    });
    this.tab = "write";
    this.chatSlot = h("div", { class: "chat-slot" });
    this.root = h("div", { class: "view editor-view with-chat" }, panelHead(this.titleEl, this.subEl),
      h("div", { class: "editor-split" }, this.chatSlot, h("div", { class: "panel-body" }, this.form)));
    this.chat = null;
    if (!id) this.attachChat(chatId);
    this.focusTarget = this.title;
    if (id) {
      this.form.inert = true;
      this.load();
    } else {
      this.initial = this.values();
    }
  }
  async load() {
    try {
      const p = await api("GET", `/agent/plans/${enc(this.id)}`);
      this.title.value = p.title;
      this.summary.value = p.summary || "";
      this.content.value = p.content || "";
      this.agent.value = p.agent || "";
      this.orchestrator.value = p.orchestrator_agent || "";
      this.perTask.checked = Boolean(p.agent_per_task);
      this.attachChat(p.chat_id || null);
      if (p.status !== "draft" && p.status !== "ready") {
        this.message = { kind: "error", text: `This plan is ${p.status}; only draft and ready plans can be edited.` };
      }
    } catch (err) {
      this.message = { kind: "error", text: err.message };
    }
    this.initial = this.values();
    this.loaded = true;
    this.form.inert = false;
    if (isOpen(this)) {
      this.update();
      this.title.focus();
    }
  }
  /** The chat pane beside the form; chatId null: a chat starts with the first message. */
  attachChat(chatId) {
    this.chatId = chatId;
    this.chat = new ChatPane(chatId, {
      planId: this.id,
      values: () => {
        if (!this.id) this.initial = this.values(); // sent to the chat, which keeps it
        return this.values();
      },
      setDraft: (draft) => this.setDraft(draft),
      loaded: (chat) => {
        // reopening #new/<chat>: the chat's draft fills an empty form
        if (!this.id && chat.draft && !this.hasText()) {
          this.setDraft(chat.draft);
          this.initial = this.values();
        }
      },
      chatStarted: (newId) => {
        this.chatId = newId;
        if (!this.id) {
          // the address now names the chat, so a reload brings it back (no re-render: same view)
          history.replaceState(null, "", `#new/${enc(newId)}`);
          this.key = `new/${newId}`;
        }
      },
    });
    this.chatSlot.replaceChildren(this.chat.root);
  }
  /** Claude proposed a plan: it replaces the form's text (which Claude was shown with the message). */
  setDraft(draft) {
    this.title.value = draft.title || "";
    this.summary.value = draft.summary || "";
    this.content.value = draft.content || "";
    if (this.tab === "preview") this.showTab("preview");
    if (!this.id) this.initial = this.values(); // kept in the chat: leaving loses nothing
    this.form.classList.remove("just-drafted");
    void this.form.offsetWidth; // restart the highlight animation
    this.form.classList.add("just-drafted");
  }
  onChat(type, data) {
    if (this.chat) this.chat.onChat(type, data);
  }
  values() {
    return { title: this.title.value, summary: this.summary.value, content: this.content.value,
      agent: this.agent.value || null, orchestrator_agent: this.orchestrator.value || null,
      agent_per_task: this.perTask.checked };
  }
  /** Whether the form holds any plan text (the agent choices alone are not a draft). */
  hasText() {
    const { title, summary, content } = this.values();
    return [title, summary, content].some((v) => v.trim());
  }
  isDirty() {
    return this.initial && JSON.stringify(this.values()) !== JSON.stringify(this.initial);
  }
  confirmLeave() {
    return !this.isDirty() || window.confirm("Discard the changes to this plan?");
  }
  leave() {
    if (!this.confirmLeave()) return;
    this.initial = this.values();
    if (this.id) navigate(`#plan/${enc(this.id)}`);
    else closePanel();
  }
  showTab(tab) {
    this.tab = tab;
    const preview = tab === "preview";
    this.tabWrite.setAttribute("aria-selected", String(!preview));
    this.tabPreview.setAttribute("aria-selected", String(preview));
    this.tabWrite.tabIndex = preview ? -1 : 0;
    this.tabPreview.tabIndex = preview ? 0 : -1;
    this.content.hidden = preview;
    this.preview.hidden = !preview;
    if (preview) {
      this.preview.replaceChildren(this.content.value.trim() ? mdBlock(this.content.value)
        : h("div", { class: "empty-hint" }, "Nothing to preview yet."));
    }
  }
  dispose() {}
  update() {
    if (this.chat) this.chat.update();
    patch(this.messageEl, JSON.stringify(this.message), () => messageNotice(this.message));
    const disabled = Boolean(this.busy) || !this.loaded;
    if (this.saveBtn.disabled !== disabled) this.saveBtn.disabled = disabled;
    const label = this.busy === "save" ? "Saving…" : this.id ? "Save changes" : "Save draft";
    if (this.saveBtn.textContent !== label) this.saveBtn.textContent = label;
    if (this.startBtn) {
      this.startBtn.disabled = disabled;
      const startLabel = this.busy === "start" ? "Starting…" : "Save & start";
      if (this.startBtn.textContent !== startLabel) this.startBtn.textContent = startLabel;
    }
  }
  async save(andStart = false) {
    if (this.busy) return;
    const values = this.values();
    if (!values.title.trim()) {
      this.titleError.textContent = "A plan needs a title.";
      this.title.setAttribute("aria-invalid", "true");
      this.title.focus();
      return;
    }
    this.titleError.textContent = "";
    this.title.removeAttribute("aria-invalid");
    this.busy = andStart ? "start" : "save";
    this.message = null;
    this.update();
    try {
      let plan;
      if (this.id) plan = await api("PATCH", `/agent/plans/${enc(this.id)}`, values);
      else if (this.chatId) {
        // the chat keeps the plan text; the agent choices go onto the saved plan afterwards
        const { title, summary, content, ...choices } = values;
        plan = (await api("POST", `/agent/chats/${enc(this.chatId)}/save`, { draft: { title, summary, content } })).plan;
        const picked = Object.fromEntries(Object.entries(choices).filter(([, v]) => v !== null && v !== false));
        if (Object.keys(picked).length) plan = await api("PATCH", `/agent/plans/${enc(plan.id)}`, picked);
      }
      else plan = await api("POST", "/agent/plans", values);
      setPlan(planRecord(plan));
      let startError = null;
      if (andStart) {
        try {
          await api("POST", `/agent/plans/${enc(plan.id)}/start`);
        } catch (err) {
          startError = err.message; // the plan is saved: its panel has Start to try again
        }
      }
      if (startError) toast(`The plan was saved but did not start: ${startError}`, "error");
      scheduleFlush();
      this.initial = this.values();
      this.busy = null;
      navigate(`#plan/${enc(plan.id)}`, !this.id);
    } catch (err) {
      this.busy = null;
      this.message = { kind: "error", text: err.message };
      if (isOpen(this)) this.update();
    }
  }
}
