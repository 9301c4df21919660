//! The status page's frame: escaping for every string shown, and one HTML
//! document with inline style and a small refresh script. Nothing is loaded
//! from elsewhere (consoles run on hosts without internet), and the
//! `Content-Security-Policy` the server sends forbids it anyway.

use std::fmt::{self, Display, Write as _};

/// `text` escaped for HTML text and attribute values.
pub struct Esc<'a>(pub &'a str);

impl Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// Any displayable value, escaped (addresses, reasons, names: all data).
pub fn esc(value: impl Display) -> String {
    Esc(&value.to_string()).to_string()
}

/// A duration in seconds as an operator reads it: `42 s`, `5 min 3 s`, `2 h 10 min`, `3 d 4 h`.
pub fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min {} s", s / 60, s % 60),
        s if s < 86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        s => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// A byte count with a binary unit.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Builds a section: a heading and rows of a table, every cell escaped.
pub struct Table {
    /// Heading cells.
    head: Vec<String>,
    /// Body rows, already escaped HTML.
    rows: Vec<String>,
    /// Columns holding numbers (right-aligned).
    numeric: Vec<bool>,
}

impl Table {
    /// A table with these column headings; a heading starting with `#` is numeric
    /// (the `#` is not shown).
    pub fn new(head: &[&str]) -> Self {
        Table {
            head: head
                .iter()
                .map(|h| h.trim_start_matches('#').to_owned())
                .collect(),
            rows: Vec::new(),
            numeric: head.iter().map(|h| h.starts_with('#')).collect(),
        }
    }

    /// One row; each cell is escaped.
    pub fn row<I, T>(&mut self, cells: I)
    where
        I: IntoIterator<Item = T>,
        T: Display,
    {
        let mut row = String::from("<tr>");
        for (i, cell) in cells.into_iter().enumerate() {
            let class = if self.numeric.get(i).copied().unwrap_or(false) {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(row, "<td{class}>{}</td>", esc(cell));
        }
        row.push_str("</tr>");
        self.rows.push(row);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table, or `empty` (escaped) in a muted line when it has no rows.
    pub fn render(&self, id: &str, empty: &str) -> String {
        if self.rows.is_empty() {
            return format!("<p class=\"muted\" id=\"{}\">{}</p>", Esc(id), Esc(empty));
        }
        let mut out = format!(
            "<div class=\"scroll\"><table id=\"{}\"><thead><tr>",
            Esc(id)
        );
        for (i, h) in self.head.iter().enumerate() {
            let class = if self.numeric[i] { " class=\"n\"" } else { "" };
            let _ = write!(out, "<th{class}>{}</th>", Esc(h));
        }
        out.push_str("</tr></thead><tbody>");
        for r in &self.rows {
            out.push_str(r);
        }
        out.push_str("</tbody></table></div>");
        out
    }
}

/// A headline figure: a big value and its caption.
pub fn figure(id: &str, value: impl Display, caption: &str) -> String {
    format!(
        "<div class=\"fig\"><div class=\"v\" id=\"{}\">{}</div><div class=\"c\">{}</div></div>",
        Esc(id),
        esc(value),
        Esc(caption)
    )
}

/// A status badge: `good` green, otherwise red.
pub fn badge(text: &str, good: bool) -> String {
    let class = if good { "ok" } else { "bad" };
    format!("<span class=\"badge {class}\">{}</span>", Esc(text))
}

/// A titled card around already-built HTML.
pub fn card(title: &str, inner: &str) -> String {
    format!(
        "<section class=\"card\"><h2>{}</h2>{inner}</section>",
        Esc(title)
    )
}

/// The whole document: `title` in the header, `subtitle` under it, `main`
/// (built from escaped parts) as the body. The script re-fetches the page
/// every few seconds and swaps `<main>`, so the view stays live without a
/// reload flicker; a failed fetch says so instead of showing stale numbers
/// silently.
pub fn page(title: &str, subtitle: &str, main: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title}</title><style>{STYLE}</style></head><body>\
<header><div><h1>{title}</h1><div class=\"sub\">{subtitle}</div></div>\
<label class=\"live\"><input type=\"checkbox\" id=\"auto\" checked> live <span id=\"stamp\"></span></label></header>\
<div id=\"offline\" hidden>console unreachable: showing the last view</div>\
<main>{main}</main><script>{SCRIPT}</script></body></html>\n",
        title = Esc(title),
        subtitle = Esc(subtitle),
    )
}

const STYLE: &str = "\
:root{--bg:#f4f5f7;--card:#fff;--ink:#1d2330;--muted:#687084;--line:#e3e6ec;--accent:#2d5bd7;--ok:#17803d;--bad:#c2272d}\
*{box-sizing:border-box}\
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}\
header{display:flex;justify-content:space-between;align-items:center;gap:12px;padding:12px 16px;background:#1d2330;color:#fff}\
h1{margin:0;font-size:18px;font-weight:600}\
.sub{color:#b8bfcf;font-size:12px;overflow-wrap:anywhere}\
.live{font-size:12px;color:#b8bfcf;white-space:nowrap}\
main{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:12px;padding:12px;max-width:1400px;margin:0 auto}\
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;min-width:0}\
.card.wide{grid-column:1/-1}\
h2{margin:0 0 8px;font-size:13px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}\
.figs{display:flex;flex-wrap:wrap;gap:8px 20px;margin-bottom:6px}\
.fig .v{font-size:24px;font-weight:600;font-variant-numeric:tabular-nums}\
.fig .c{font-size:12px;color:var(--muted)}\
.scroll{overflow-x:auto}\
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}\
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);white-space:nowrap}
td:last-child:not(.n){white-space:normal;overflow-wrap:anywhere;min-width:8em}\
th{font-weight:600;color:var(--muted);font-size:12px}\
td.n,th.n{text-align:right}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}\
dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}\
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;color:#fff}\
.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}\
.muted{color:var(--muted);margin:4px 0}\
#offline{background:var(--bad);color:#fff;padding:6px 16px;font-size:13px}\
@media (max-width:480px){main{padding:8px;gap:8px;grid-template-columns:1fr}.fig .v{font-size:20px}header{padding:10px 12px}}";

const SCRIPT: &str = "\
(function(){var auto=document.getElementById('auto'),stamp=document.getElementById('stamp'),off=document.getElementById('offline');\
function tick(){if(!auto.checked)return;fetch(location.href,{cache:'no-store'}).then(function(r){if(!r.ok)throw r.status;return r.text()})\
.then(function(t){var d=new DOMParser().parseFromString(t,'text/html');var m=d.querySelector('main');\
if(m){document.querySelector('main').replaceWith(m)}off.hidden=true;stamp.textContent=new Date().toLocaleTimeString()})\
.catch(function(){off.hidden=false})}\
stamp.textContent=new Date().toLocaleTimeString();setInterval(tick,3000)})();";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            Esc("<script>alert('x')</script> & \"y\"").to_string(),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        let mut t = Table::new(&["name", "#n"]);
        t.row(["<b>", "1"]);
        assert!(t
            .render("t", "")
            .contains("<td>&lt;b&gt;</td><td class=\"n\">1</td>"));
    }

    #[test]
    fn durations_and_bytes_read_naturally() {
        assert_eq!(duration(42), "42 s");
        assert_eq!(duration(303), "5 min 3 s");
        assert_eq!(duration(7800), "2 h 10 min");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
    }
}
