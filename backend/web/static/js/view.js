/*
 * DetailView: the base of the plan and task panels.
 *
 * Owns: the parts every detail panel has, so PlanView and TaskView set them up
 * in one place: the record id and what was loaded of it (detail, missing), the
 * running action and its message (busy, message), the head (title and subtitle),
 * the action toolbar, message/error/stats slots, the collapsible content, the
 * activity feed, the frame that puts them in order, and fetching the record
 * (loadDetail). Subclasses add their own sections and implement load() and update().
 */
import { api } from "./api.js";
import { h } from "./dom.js";
import { Feed } from "./feed.js";
import { enc } from "./format.js";
import { panelHead } from "./panel.js";
import { isOpen } from "./router.js";

export class DetailView {
  /**
   * kind: "plan" or "task" (the feed's log, the CSS classes, data-<kind>-id on the root);
   * opts: actionsLabel, contentOpen, feedEmpty, feedLabel.
   */
  constructor(kind, id, opts) {
    this.kind = kind;
    this.id = id;
    this.cardId = id; // the router marks this card as selected
    this.detail = null;
    this.missing = false;
    this.busy = null;
    this.message = null;
    this.titleEl = h("h2", { id: "panel-title", tabindex: "-1" });
    this.subEl = h("div", { class: "panel-sub" });
    this.actionsEl = h("div", { class: "actions", role: "toolbar", "aria-label": opts.actionsLabel });
    this.messageEl = h("div", { "aria-live": "polite" });
    this.errorEl = h("div");
    this.statsEl = h("div");
    this.contentEl = h("details", { class: `section ${kind}-content`, open: Boolean(opts.contentOpen) });
    this.feed = new Feed(kind, id, opts.feedEmpty, opts.feedLabel);
  }

  /** The panel's root: head, then actions, message, error and stats, then `sections` in order. */
  frame(...sections) {
    return h("div", { class: `view ${this.kind}-view`, [`data-${this.kind}-id`]: this.id },
      panelHead(this.titleEl, this.subEl),
      h("div", { class: "panel-body" },
        this.actionsEl, this.messageEl, this.errorEl, this.statsEl, ...sections));
  }

  /** Fetch GET /agent/<kind>s/<id> into `detail`: a 404 marks it missing, other errors show in the panel. */
  async loadDetail() {
    try {
      this.detail = await api("GET", `/agent/${this.kind}s/${enc(this.id)}`);
      this.missing = false;
      this.detailLoaded(this.detail);
    } catch (err) {
      if (err.status === 404) this.missing = true;
      else this.message = { kind: "error", text: err.message };
    }
    if (isOpen(this)) this.update(true);
  }

  /** Called with the fetched record before the panel updates. */
  detailLoaded(_detail) {}

  dispose() {}
}
