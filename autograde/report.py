"""Human-readable views of a grade dict: a progress table for the terminal, per-case lines for notebooks."""
import html

MARK = {True: "PASS", False: "FAIL"}
STATUS_WORD = {"passed": "passed", "failed": "failed", "error": "ERROR", "timeout": "TIMEOUT",
               "not_implemented": "not implemented", "forbidden": "FORBIDDEN"}


def progress_table(report, verbose=False):
    """One row per exercise, grouped under the notebook that teaches it; totals; the sandbox's caveats."""
    from .course import notebook_for_module

    rows = [("exercise", "points", "status", "first problem")]
    heading_rows = set()
    current = None
    for ex in report["exercises"]:
        nb = notebook_for_module(ex["id"].split(".", 1)[0])
        if nb.number != current:
            current = nb.number
            heading_rows.add(len(rows))
            rows.append((f"{nb.number:02d} {nb.title}", "", "", ""))
        first = next((t["message"] for t in ex["tests"] if not t["passed"] and not t.get("skipped")), "")
        if ex["status"] == "not_implemented":
            first = "raises NotImplementedError"
        skipped = sum(1 for t in ex["tests"] if t.get("skipped"))
        if skipped and not first:
            first = f"{skipped} GPU case(s) skipped: {_skip_reason(ex)}"
        rows.append(("  " + ex["id"], f"{ex['points']:g}/{ex['max_points']:g}", STATUS_WORD[ex["status"]],
                     _shorten(first, 110)))
    widths = [max(len(r[i]) for n, r in enumerate(rows) if n not in heading_rows) for i in range(3)]
    lines = []
    for n, r in enumerate(rows):
        if n in heading_rows:
            lines.append(r[0])
        else:
            lines.append("  ".join(r[i].ljust(widths[i]) for i in range(3)) + "  " + r[3])
    lines.insert(1, "-" * min(150, max(len(line) for line in lines)))
    done = sum(ex["status"] == "passed" for ex in report["exercises"])
    lines.append("")
    lines.append(f"{done}/{len(report['exercises'])} exercises passed; "
                 f"{report['total']:g}/{report['max_total']:g} points")
    if report.get("device", {}).get("skipped"):
        lines.append(f"device: {report['device']['skipped']}")
    if report.get("dropped_guarantees"):
        lines.append(f"sandbox: {report['sandbox']} ({report['dropped_guarantees']})")
    if verbose:
        lines.append("")
        lines += case_lines(report)
    return "\n".join(lines)


def _skip_reason(ex):
    return next((t["skipped"] for t in ex["tests"] if t.get("skipped")), "")


def case_lines(report):
    lines = []
    for ex in report["exercises"]:
        lines.append(f"{ex['id']}: {ex['points']:g}/{ex['max_points']:g} ({STATUS_WORD[ex['status']]})")
        if ex["status"] == "not_implemented":
            lines.append("  not implemented yet: replace the `raise NotImplementedError` in "
                         f"src/attnlab/{ex['id'].split('.')[0]}.py")
            continue
        shown_reason = False
        for t in ex["tests"]:
            if t.get("skipped"):
                lines.append(f"  SKIP  {t['name']}: {t['skipped']}")
            elif t["passed"]:
                lines.append(f"  PASS  {t['name']}: {t['intent']}")
            elif ex["status"] in ("timeout", "error", "forbidden"):
                if not shown_reason:
                    lines.append(f"  FAIL  {t['message']}")
                    shown_reason = True
            else:
                lines.append(f"  FAIL  {t['message']}")
    return lines


def _shorten(text, n):
    return text if len(text) <= n else text[: n - 3] + "..."


def show_in_notebook(report):
    """Print per-case results (plain text works everywhere; colour when IPython can render HTML)."""
    try:
        from IPython.display import HTML, display
    except ImportError:
        print("\n".join(case_lines(report)))
        return
    colour = {"PASS": "#1a7f37", "FAIL": "#cf222e", "SKIP": "#9a6700"}
    parts = []
    for line in case_lines(report):
        word = line.strip()[:4]
        style = f"color:{colour[word]}" if word in colour else "font-weight:bold"
        parts.append(f'<div style="{style};white-space:pre-wrap;font-family:monospace">{html.escape(line)}</div>')
    display(HTML("".join(parts)))
