// The one way the CLIs (`status`, `rehearse`, the estimator's messages) print a duration: minutes
// under an hour, hours and minutes under two days, then days and hours.
export function fmtDuration(s: number): string {
    if (s < 60) return `${Math.round(s)}s`;
    const m = Math.round(s / 60);
    if (m < 60) return `${m}m`;
    const h = Math.floor(m / 60);
    if (h < 48) return `${h}h${String(m % 60).padStart(2, "0")}m`;
    return `${Math.floor(h / 24)}d${h % 24}h`;
}
