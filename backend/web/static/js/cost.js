/*
 * What things cost and how a cost reads on screen.
 *
 * Why one module: a task's cost is needed by the state (plan totals), the board's
 * page counts, the budget arithmetic, the cards and both panels. It used to live
 * with the repair lines (repair.js), so the state imported a view module to add
 * up dollars. This module imports nothing: anyone may use it.
 *
 * Owns: `taskCost` (every run of a task: reruns, retries, repairs, see
 * docs/convergence.md), its per-run breakdown, and the two ways a sum of dollars
 * reads: `fmtCost` for measured spend ("$0.0123") and `money` for budgets
 * (as backend/budget.py money()).
 */

/** "$0.0123", "$1.20", "$140"; "—" when unknown. */
export function fmtCost(usd) {
  if (usd == null || Number.isNaN(usd)) return "—";
  if (usd === 0) return "$0";
  return "$" + (usd >= 100 ? usd.toFixed(0) : usd >= 1 ? usd.toFixed(2) : usd.toFixed(4));
}

/** Dollars for people: cents from a cent up, else four decimals (as backend/budget.py money()). */
export function money(usd) {
  const v = Number(usd) || 0;
  return v >= 0.01 || v === 0 ? `$${v.toFixed(2)}` : `$${v.toFixed(4)}`;
}

/** The task's cumulative cost in USD, or null when no run reported one. */
export function taskCost(t) {
  if (t.run_history && t.run_history.length) {
    return t.run_history.some((r) => r.cost_usd != null) ? (t.total_cost_usd || 0) : null;
  }
  return t.run && t.run.cost_usd != null ? t.run.cost_usd : null;
}

/** "run $0.01 · repair $0.02": what each run cost, for a tooltip. */
export function costBreakdown(t) {
  const runs = t.run_history || [];
  if (runs.length < 2) return "cost";
  return "total of " + runs.map((r) => `${r.kind} ${fmtCost(r.cost_usd)}`).join(" · ");
}
