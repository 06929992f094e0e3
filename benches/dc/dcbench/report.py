"""Markdown table and SVG charts (drawn by hand: no plotting library needed)."""

import html

COLORS = {"curl": "#d62728", "aria2c": "#1f77b4", "blobpin": "#2ca02c"}
MARK = {"curl": "square", "aria2c": "circle", "blobpin": "diamond"}


def fmt(x, nd=2, unit=""):
    if x is None:
        return "—"
    return f"{x:.{nd}f}{unit}"


def markdown(meta, calib, rows, refused):
    L = []
    L.append("# blobpin DC benchmark results\n")
    L.append(f"- when: {meta['when']} · blob: {meta['size_mib']} MiB (flat: {meta['flat_size_mib']} MiB) · "
             f"runs per configuration: {meta['runs']} · values are medians over runs")
    L.append(f"- links: host NIC {meta['nic']} Mbit, rack uplink {meta['uplink']} Mbit, WAN {meta['wan']} Mbit "
             f"+ {meta['delay_ms']} ms each way (TUN delay line); tbf on both ends")
    L.append("- bound = physical cut bound of the topology (nominal link rates); efficiency = bound / slowest "
             "host (TCP/IP headers alone cap it near 0.95)")
    L.append("- WAN in / F: bytes that crossed the WAN into each DC (interface counters, L2) over the blob "
             "size; seeder / F: bytes the build host sent")
    L.append(f"- machine: shared with other work; load average at start {meta['loadavg']}\n")
    L.append("## Calibration\n")
    for c in calib:
        verdict = "valid" if c["valid"] else "**INVALID** (a link end stayed below 95% of its rate)"
        w = c["worst"]
        L.append(f"- {c['topology']}: {verdict}; worst link end `{w['end']}` {w['measured_mbit']} of "
                 f"{w['rate_mbit']} Mbit ({w['util'] * 100:.1f}%); machine CPU busy {c['cpu_busy'] * 100:.0f}%")
    if not calib:
        L.append("- skipped (--no-calibrate): results are NOT validated")
    L.append("")
    if refused:
        L.append("## Methods not run\n")
        for m, why in refused.items():
            L.append(f"- {m}: {why}")
        L.append("")
    L.append("## Results\n")
    L.append("| scenario | method | runs ok | bound s | slowest s | slowest a / b s | median host s | efficiency | "
             "WAN in a / F | WAN in b / F | max rack in / F | seeder / F | CPU s | machine busy | SHA-256 ok | "
             "failed hosts |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        wan = r.get("wan_in_over_F") or {}
        L.append("| " + " | ".join([
            r["scenario"], r["method"], f"{r['complete_runs']}/{r['runs']}", fmt(r["bound_s"], 1),
            fmt(r["slowest_s"], 1),
            " / ".join(fmt(v, 1) for v in (r.get("slowest_per_dc_s") or {}).values()) or "—",
            fmt(r["median_host_s"], 1), fmt(r["efficiency"], 2),
            fmt(wan.get("a"), 2), fmt(wan.get("b"), 2), fmt(r.get("rack_in_max_over_F"), 2),
            fmt(r["seeder_over_F"], 2), fmt(r["cpu_s"], 1),
            fmt(r["machine_cpu_busy"] * 100 if r["machine_cpu_busy"] is not None else None, 0, "%"),
            f"{r['sha_ok']}/{r['sha_checked']}", fmt(r["failed_hosts"], 0)]) + " |")
    L.append("")
    L.append("Scenario notes: *seeder-kill* kills the seed side at 0.5 x bound; *kill25* SIGKILLs 4 random "
             "hosts at 0.3 x bound (slowest = slowest survivor); *late-dc* starts DC b 10 s late (times from "
             "each host's own start); *update* distributes v2 after v1 is everywhere (figures are v2's).")
    errs = [(r["scenario"], r["method"], e) for r in rows for e in r["errors"]]
    if errs:
        L.append("\n## Errors\n")
        for sc, m, e in errs:
            L.append(f"- {sc} / {m}: {e}")
    L.append("\n## Charts\n")
    for sc in dict.fromkeys(r["scenario"] for r in rows):
        L.append(f"![{sc}](chart-{sc}.svg)")
    return "\n".join(L) + "\n"


def svg_chart(scenario, rows, width=900, height=360):
    """Completion time (from the run's start, median over runs) per host, one marker per method,
    with the bound as a dashed line; hosts that never finished are drawn as a cross at the top."""
    rows = [r for r in rows if r["scenario"] == scenario]
    hosts = list(rows[0]["per_host_s"].keys()) if rows else []
    bound = rows[0]["bound_s"] if rows else 1
    vals = [v for r in rows for v in r["per_host_s"].values() if v is not None] + [bound]
    ymax = max(vals) * 1.1
    ml, mr, mt, mb = 60, 130, 40, 50
    pw, ph = width - ml - mr, height - mt - mb

    def X(i):
        return ml + (i + 0.5) * pw / max(1, len(hosts))

    def Y(v):
        return mt + ph - v / ymax * ph

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{ml}" y="22" font-size="15">{html.escape(scenario)}: completion time per host '
         f'(median over runs)</text>']
    step = _nice_step(ymax)
    v = 0.0
    while v <= ymax:
        o.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{ml - 6}" y="{Y(v) + 4:.1f}" text-anchor="end">{v:g}</text>')
        v += step
    o.append(f'<text x="16" y="{mt + ph / 2}" transform="rotate(-90 16 {mt + ph / 2})" '
             f'text-anchor="middle">seconds</text>')
    for i, h in enumerate(hosts):
        o.append(f'<text x="{X(i):.1f}" y="{mt + ph + 18}" text-anchor="middle">{html.escape(h)}</text>')
    o.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{Y(bound):.1f}" y2="{Y(bound):.1f}" stroke="black" '
             f'stroke-dasharray="6 4"/>')
    o.append(f'<text x="{ml + pw + 6}" y="{Y(bound) + 4:.1f}">bound {bound:.1f} s</text>')
    n = len(rows)
    for j, r in enumerate(rows):
        m = r["method"]
        c = COLORS.get(m, "#777")
        dx = (j - (n - 1) / 2) * 7
        for i, h in enumerate(hosts):
            t = r["per_host_s"][h]
            x = X(i) + dx
            if t is None:
                y = mt + 6
                o.append(f'<path d="M{x - 4:.1f},{y - 4} l8,8 m0,-8 l-8,8" stroke="{c}" stroke-width="2"/>')
            else:
                o.append(_marker(MARK.get(m, "circle"), x, Y(t), c))
        ly = mt + 20 + j * 20
        o.append(_marker(MARK.get(m, "circle"), ml + pw + 14, ly - 4, c))
        o.append(f'<text x="{ml + pw + 24}" y="{ly}">{html.escape(m)}</text>')
    o.append(f'<text x="{ml}" y="{height - 8}" fill="#555">x = host did not finish (killed, failed or timed out); times from the start of the run</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def _marker(kind, x, y, c):
    if kind == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{c}"/>'
    if kind == "diamond":
        return f'<path d="M{x:.1f},{y - 5:.1f} l5,5 l-5,5 l-5,-5 z" fill="{c}"/>'
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{c}"/>'


def _nice_step(ymax):
    for s in (1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000):
        if ymax / s <= 10:
            return s
    return 1000
