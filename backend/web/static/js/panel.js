/*
 * Building blocks shared by the panel views: the head with its close button,
 * action buttons that show progress, notices, stats, two-step delete.
 *
 * Owns: how an action runs in a panel (busy state on its button, the server's
 * error shown in the panel, keyboard focus kept on the same action when the row
 * of buttons is rebuilt). Views pass themselves in: these helpers read and set
 * view.busy, view.message and view.confirmDelete, and call view.update(true).
 */
import { h, icon, patch } from "./dom.js";
import { closePanel, isOpen, panelEl } from "./router.js";

export function panelHead(titleEl, sub, extra) {
  return h("div", { class: "panel-head" },
    h("div", { class: "titles" }, titleEl, sub),
    extra || null,
    h("button", { class: "icon-btn", type: "button", title: "Close (Esc)", "aria-label": "Close", onclick: closePanel },
      icon("x")));
}

/** A button that runs an async action, shows progress and reports the server's answer. */
export function actionButton(view, name, label, opts = {}) {
  const busy = view.busy === name;
  return h("button", {
    class: `btn ${opts.kind || ""} ${busy ? "busy" : ""}`.trim(),
    type: "button",
    "data-action": name,
    disabled: opts.disabled || Boolean(view.busy),
    title: opts.title,
    onclick: opts.onclick,
  }, busy ? h("span", { class: "spinner" }) : opts.icon ? icon(opts.icon) : null, busy ? opts.busyLabel || label : label);
}

export async function runAction(view, name, fn) {
  view.busy = name;
  view.message = null;
  view.update(true);
  try {
    const result = await fn();
    view.busy = null;
    return result;
  } catch (err) {
    view.busy = null;
    view.message = { kind: "error", text: err.message };
    return undefined;
  } finally {
    if (isOpen(view)) view.update(true);
  }
}

/** Rebuild a row of buttons, keeping keyboard focus on the same action when it survives. */
export function patchActions(el, sig, build) {
  const focused = el.contains(document.activeElement) ? document.activeElement.dataset.action : null;
  if (!patch(el, sig, build) || !focused) return;
  const same = el.querySelector(`[data-action="${focused}"]:not(:disabled)`);
  const fallback = el.querySelector("button:not(:disabled)");
  (same || fallback || panelEl.querySelector(".panel-head h2")).focus();
}

export function messageNotice(message) {
  if (!message) return null;
  return h("div", { class: `notice ${message.kind}`, role: message.kind === "error" ? "alert" : "status" },
    icon(message.kind === "error" ? "alert" : message.kind === "ok" ? "check" : "info"),
    h("div", { class: "notice-body" }, message.title ? h("strong", null, message.title) : null, message.text,
      message.pre ? h("pre", null, message.pre) : null));
}

export function stat(label, value, opts = {}) {
  return h("div", { class: `stat ${opts.wide ? "wide" : ""}` },
    h("dt", null, label), h("dd", { class: opts.mono ? "mono" : null, title: opts.title || String(value) }, value));
}

export function twoStepDelete(view, label, onConfirm) {
  const confirming = view.confirmDelete && Date.now() < view.confirmDelete;
  return actionButton(view, "delete", confirming ? "Click again to delete" : label, {
    kind: `danger ${confirming ? "confirm" : ""}`,
    icon: "trash",
    busyLabel: "Deleting…",
    onclick: () => {
      if (!(view.confirmDelete && Date.now() < view.confirmDelete)) {
        view.confirmDelete = Date.now() + 4000;
        view.update(true);
        setTimeout(() => { if (isOpen(view)) view.update(true); }, 4100);
        return;
      }
      view.confirmDelete = 0;
      onConfirm();
    },
  });
}
