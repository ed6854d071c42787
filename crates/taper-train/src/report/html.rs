//! Small pieces of the page: escaping, inlined pictures, times and the page's
//! style and script (inline: the page works offline, from one file).

use std::fmt::Write as _;
use std::path::Path;

/// Escapes text for HTML element content and double-quoted attributes.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The MIME type of a picture file by its extension; `None` for other files.
pub(crate) fn mime(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        _ => return None,
    })
}

/// Width of a PNG from its header; `None` for other data.
fn png_width(bytes: &[u8]) -> Option<u32> {
    (bytes.len() >= 24 && bytes.starts_with(b"\x89PNG"))
        .then(|| u32::from_be_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]))
}

/// `<img>` with the file inlined as a `data:` URI, or a note naming a file that
/// is missing or not a picture (a page never shows a broken image). Pictures
/// narrower than 64 pixels (8x8 digits) are drawn enlarged, pixels kept sharp.
pub(crate) fn picture(path: &Path, alt: &str) -> String {
    match (mime(path), std::fs::read(path)) {
        (Some(m), Ok(bytes)) => {
            let small = png_width(&bytes).is_some_and(|w| w < 64);
            format!(
                "<img{} alt=\"{}\" src=\"data:{m};base64,{}\">",
                if small { " class=\"thumb\"" } else { "" },
                esc(alt),
                base64::encode(bytes)
            )
        }
        (None, _) => format!(
            "<p class=\"missing\">not a picture: {}</p>",
            esc(&path.display().to_string())
        ),
        (_, Err(e)) => format!(
            "<p class=\"missing\">cannot read {}: {}</p>",
            esc(&path.display().to_string()),
            esc(&e.to_string())
        ),
    }
}

fn leap(y: u64) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

/// Seconds since the Unix epoch as `YYYY-MM-DD hh:mm:ss UTC`.
pub(crate) fn utc(secs: f64) -> String {
    let s = if secs.is_finite() {
        secs.max(0.0) as u64
    } else {
        0
    };
    let (mut days, rem) = (s / 86_400, s % 86_400);
    let mut year = 1970;
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let feb = if leap(year) { 29 } else { 28 };
    let lengths = [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 0;
    while days >= lengths[month] {
        days -= lengths[month];
        month += 1;
    }
    format!(
        "{year:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        month + 1,
        days + 1,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A duration for people: `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub(crate) fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    if secs < 60.0 {
        return format!("{secs:.1} s");
    }
    let s = secs.round() as u64;
    if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, s / 60 % 60)
    }
}

/// Seconds since the Unix epoch, now.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A figure's text on the page: strings as they are, anything else as its
/// JSON text, so that numbers read exactly as in the JSON line.
pub(crate) fn figure_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A two-column table of figures whose value cells carry `data-figure`.
pub(crate) fn figures_table(figures: &[(String, serde_json::Value)]) -> String {
    let mut s = String::from("<table class=\"figures\">");
    for (k, v) in figures {
        let _ = write!(
            s,
            "<tr><th>{}</th><td data-figure=\"{}\">{}</td></tr>",
            esc(k),
            esc(k),
            esc(&figure_text(v))
        );
    }
    s.push_str("</table>");
    s
}

/// The page's style: readable on a phone (one column, charts scaled to the
/// width), tables that scroll sideways instead of overflowing.
pub(crate) const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;padding:12px;max-width:1100px;color:#222;background:#fafafa;line-height:1.4}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.15em;margin:1.2em 0 .4em;border-bottom:1px solid #ddd}
h3{font-size:1em;margin:.8em 0 .3em}
.status{padding:6px 10px;border-radius:4px;background:#e8f4e8;display:inline-block}
.status.live{background:#fff4d6}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:.3em 0;font-size:.92em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0;font-weight:600}
td[data-figure]{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
tr.diff td,tr.diff th{background:#fff1b8}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:10px}
.charts svg,.chart svg{width:100%;height:auto;background:#fff;border:1px solid #e4e4e4}
.chart{max-width:640px}
.pictures{display:flex;flex-wrap:wrap;gap:8px}
figure{margin:0;background:#fff;border:1px solid #e4e4e4;padding:4px;text-align:center}
figcaption{font-size:.85em;max-width:220px;margin:auto}
img{max-width:100%;image-rendering:pixelated}
img.thumb{width:96px;height:auto}
.slider input{width:100%;max-width:480px}
.missing{color:#a00}
pre{white-space:pre-wrap;word-break:break-all;font-size:.85em;background:#fff;border:1px solid #e4e4e4;padding:6px}
.swatch{display:inline-block;width:1em;height:1em;vertical-align:middle;margin-right:4px}
";

/// Inline script, first in `<head>`: counts script errors and, once the page
/// has loaded, writes on `<body>` how many images there are, how many did not
/// decode and how many errors fired (`data-images`, `data-broken-images`,
/// `data-errors`, `data-checked`): what the browser test reads back. It also
/// drives the sliders over frames.
pub(crate) const SCRIPT: &str = "
window.taperErrors=0;
window.addEventListener('error',function(){window.taperErrors++;},true);
window.addEventListener('load',function(){
var imgs=document.images,bad=0;
for(var i=0;i<imgs.length;i++){if(!imgs[i].complete||imgs[i].naturalWidth===0){bad++;}}
var sl=document.querySelectorAll('.slider');
for(var j=0;j<sl.length;j++){(function(s){
var input=s.querySelector('input'),out=s.querySelector('output'),fr=s.querySelectorAll('figure');
function show(){var k=+input.value;for(var f=0;f<fr.length;f++){fr[f].hidden=(f!==k);}
var c=fr[k]&&fr[k].querySelector('figcaption');out.textContent=c?c.textContent:'';}
input.addEventListener('input',show);show();})(sl[j]);}
var b=document.body;
b.setAttribute('data-images',imgs.length);
b.setAttribute('data-broken-images',bad);
b.setAttribute('data-errors',window.taperErrors);
b.setAttribute('data-checked','1');
});
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates_match_known_instants() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000.0), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(1_709_251_199.0), "2024-02-29 23:59:59 UTC");
    }

    #[test]
    fn escaping_and_durations() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(245.0), "4 min 05 s");
        assert_eq!(duration(7380.0), "2 h 03 min");
    }

    #[test]
    fn figures_keep_the_json_text_of_numbers() {
        let t = figures_table(&[
            ("acc".into(), serde_json::json!(0.9583333333333334)),
            ("name".into(), serde_json::json!("a<b")),
        ]);
        assert!(
            t.contains("<td data-figure=\"acc\">0.9583333333333334</td>"),
            "{t}"
        );
        assert!(t.contains("<td data-figure=\"name\">a&lt;b</td>"), "{t}");
    }

    #[test]
    fn a_missing_picture_is_a_note_not_a_broken_image() {
        let p = picture(Path::new("/nonexistent/x.png"), "x");
        assert!(p.starts_with("<p class=\"missing\">"), "{p}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.png");
        std::fs::write(&f, [137u8, 80, 78, 71]).unwrap();
        let p = picture(&f, "a");
        assert!(p.contains("src=\"data:image/png;base64,iVBORw==\""), "{p}");
        // An 8-pixel-wide PNG header: drawn enlarged.
        let mut header = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        header.extend([0, 0, 0, 8, 0, 0, 0, 8]);
        std::fs::write(&f, &header).unwrap();
        assert!(picture(&f, "a").starts_with("<img class=\"thumb\""));
    }
}
