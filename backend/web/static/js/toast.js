/*
 * Toasts: short-lived messages in the corner (#toasts).
 *
 * Owns: transient feedback that is not tied to a panel ("Plan deleted.",
 * a snapshot that could not be fetched). Errors stay longer and are alerts.
 */
import { $, h } from "./dom.js";

export function toast(message, kind = "info") {
  const el = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  $("#toasts").append(el);
  setTimeout(() => el.remove(), kind === "error" ? 8000 : 4000);
}
