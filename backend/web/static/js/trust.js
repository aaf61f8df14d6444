/*
 * Workspace trust: the dashboard's confirmation of commands a cloned repository sets.
 *
 * Owns: the #trust banner. When /agent/health says the project's committed
 * shipyard.yaml sets commands (setup_command, test_command, claude_bin, …) that
 * are not trusted yet, the server runs nothing; this banner shows each command
 * exactly as it would run and a button that trusts exactly those (it sends back
 * the hash the server showed, so a change in between is refused). See
 * docs/security.md.
 */
import { api } from "./api.js";
import { $, h, icon, patch } from "./dom.js";
import { toast } from "./toast.js";

let onTrusted = () => {};

/** Draw (or clear) the banner from a health answer; ``after`` runs once trust was given. */
export function renderTrust(health, after) {
  if (after) onTrusted = after;
  const box = $("#trust");
  const trust = health && health.trust;
  const untrusted = trust && !trust.trusted && trust.commands && Object.keys(trust.commands).length;
  patch(box, untrusted ? trust.hash : "", () => (untrusted ? [banner(trust)] : []));
}

function banner(trust) {
  const rows = Object.entries(trust.commands).map(([name, value]) =>
    h("li", null, h("span", { class: "trust-name" }, name), h("code", { class: "trust-command" },
      typeof value === "string" ? value : JSON.stringify(value))));
  return h("div", { class: "banner trust", role: "alert", "data-banner": "trust" }, icon("alert"),
    h("div", { class: "banner-body" },
      h("strong", null, "This project's shipyard.yaml comes with the repository and sets commands. "
        + "Shipyard runs no agent and no command here until you trust them."),
      h("ul", { class: "trust-commands", "aria-label": "Commands Shipyard would run" }, rows),
      h("span", { class: "fix" }, "Read them first: they run on this machine as you. If you did not write them, "
        + "remove them from shipyard.yaml instead. (Or run 'shipyard trust' in the project.)")),
    h("button", { class: "btn small", type: "button", "data-action": "trust",
      onclick: (e) => grant(e.currentTarget, trust.hash) }, icon("check"), "Trust these commands"));
}

async function grant(button, hash) {
  button.disabled = true;
  try {
    await api("POST", "/agent/trust", { hash });
    toast("Trusted: Shipyard may run these commands in this project.", "info");
    onTrusted();
  } catch (err) {
    button.disabled = false;
    toast(err.message, "error");
  }
}
