/*
 * Whether plans can start on this server, from the health checks.
 *
 * Owns: the rule shared by the banner (header.js) and the Start and Retry buttons
 * (plan-panel.js): a failed check with blocks_start (Claude Code missing, root
 * without IS_SANDBOX=1, a repository without commits) makes Start impossible, so
 * the button is disabled and says why; the server refuses with the same words.
 */
import { S } from "./store.js";

/** The failed checks that stop any plan from starting (empty when plans can start). */
export function startBlockers() {
  return ((S.health && S.health.checks) || []).filter((c) => c.blocks_start);
}

/** One sentence for a disabled Start button's tooltip and notice, or "" when it can start. */
export function startBlockedReason() {
  const blockers = startBlockers();
  if (!blockers.length) return "";
  return `Plans cannot start here yet: ${blockers.map((c) => c.detail).join(" ")}`;
}
