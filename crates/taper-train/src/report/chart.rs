//! The report's charts, drawn by plotters' SVG backend into strings that the
//! page inlines (text stays text: the browser renders the labels).

use super::section::Series;
use crate::{Error, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Size of a line or scatter chart in SVG units; the page scales it to the
/// screen's width (phones included).
const SIZE: (u32, u32) = (640, 360);

/// Curve colours, distinct on white and for the common colour blindnesses.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(120, 120, 120),
    RGBColor(240, 228, 66),
];

/// The colour of the `i`-th series (the comparison page colours its runs alike).
pub(crate) fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Data(format!("report chart: {e}"))
}

/// The finite range of `values`, widened so that a flat series still gets an
/// axis; `None` when no value is finite.
fn span(values: impl Iterator<Item = f64>, pad: f64) -> Option<std::ops::Range<f64>> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if lo > hi {
        return None;
    }
    // A flat series (a constant learning rate) gets 5 % of its value on each
    // side, so that its axis reads in its own units.
    let d = if hi > lo {
        (hi - lo) * pad
    } else if lo != 0.0 {
        lo.abs() * 0.05
    } else {
        0.05
    };
    Some((lo - d)..(hi + d))
}

/// Axis numbers short enough for a phone: 4 significant digits.
fn tick(v: &f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.2e}")
    } else {
        let s = format!("{v:.4}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" {
            "0".into()
        } else {
            s.to_string()
        }
    }
}

/// An x-y chart with its caption, axis titles, short tick labels and a light grid.
fn xy_chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    title: &str,
    (x_label, y_label): (&str, &str),
    xr: std::ops::Range<f64>,
    yr: std::ops::Range<f64>,
    x_ticks: usize,
) -> Result<ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(52)
        .y_label_area_size(80)
        .build_cartesian_2d(xr, yr)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_labels(x_ticks)
        .label_style(("sans-serif", 17))
        .axis_desc_style(("sans-serif", 17))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// A line chart of `series` (markers on each point when there are few, so a
/// one-epoch run still shows its value). `None` when no point is finite.
///
/// # Errors
/// A drawing failure of plotters.
pub(crate) fn lines(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<Option<String>> {
    let finite: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect()
        })
        .collect();
    let all = || finite.iter().flatten();
    let (Some(xr), Some(yr)) = (
        span(all().map(|p| p.0), 0.0),
        span(all().map(|p| p.1), 0.05),
    ) else {
        return Ok(None);
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        // Whole-number x values (epochs, steps) get whole-number ticks.
        let whole = all().all(|p| p.0.fract() == 0.0);
        let x_ticks = if whole {
            ((xr.end - xr.start).round() as usize + 1).clamp(2, 10)
        } else {
            10
        };
        let mut chart = xy_chart(&root, title, (x_label, y_label), xr, yr, x_ticks)?;
        for (i, (s, pts)) in series.iter().zip(&finite).enumerate() {
            let c = colour(i);
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                .map_err(err)?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
                });
            if pts.len() <= 60 {
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
                    .map_err(err)?;
            }
        }
        if series.len() > 1 || series.first().is_some_and(|s| !s.name.is_empty()) {
            chart
                .configure_series_labels()
                .label_font(("sans-serif", 17))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}

/// A scatter plot of `points`, with the `y = x` diagonal when `diagonal`.
/// `None` when no point is finite.
///
/// # Errors
/// A drawing failure of plotters.
pub(crate) fn scatter(
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64)],
    diagonal: bool,
) -> Result<Option<String>> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (Some(mut xr), Some(mut yr)) = (
        span(pts.iter().map(|p| p.0), 0.05),
        span(pts.iter().map(|p| p.1), 0.05),
    ) else {
        return Ok(None);
    };
    if diagonal {
        // One scale on both axes, so that the diagonal is at 45 degrees.
        let r = xr.start.min(yr.start)..xr.end.max(yr.end);
        (xr, yr) = (r.clone(), r);
    }
    let mut svg = String::new();
    {
        let size = if diagonal { (480, 480) } else { SIZE };
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = xy_chart(&root, title, (x_label, y_label), xr.clone(), yr, 10)?;
        if diagonal {
            chart
                .draw_series(LineSeries::new(
                    [(xr.start, xr.start), (xr.end, xr.end)],
                    BLACK.stroke_width(1),
                ))
                .map_err(err)?;
        }
        let c = colour(0);
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.mix(0.7).filled())))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}

/// A matrix as shaded cells, each labelled with its value (integers when all
/// values are whole, as in a confusion matrix), row names on the left, column
/// names below.
///
/// # Errors
/// Rows of another length than `columns`, or a drawing failure.
pub(crate) fn matrix(
    title: &str,
    rows: &[String],
    columns: &[String],
    values: &[Vec<f64>],
    x_label: &str,
    y_label: &str,
) -> Result<Option<String>> {
    let (nr, nc) = (rows.len(), columns.len());
    if values.len() != nr || values.iter().any(|r| r.len() != nc) {
        return Err(Error::shape(
            "report matrix",
            format!("{nr} rows of {nc} values"),
            format!(
                "{} rows of {:?} values",
                values.len(),
                values.iter().map(Vec::len).collect::<Vec<_>>()
            ),
        ));
    }
    if nr == 0 || nc == 0 {
        return Ok(None);
    }
    let max = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |a, v| a.max(v.abs()));
    let whole = values.iter().flatten().all(|v| v.fract() == 0.0);
    let cell = (480 / nc.max(nr)).clamp(16, 48) as u32;
    let size = (cell * nc as u32 + 110, cell * nr as u32 + 110);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(8)
            .x_label_area_size(44)
            .y_label_area_size(56)
            // Integer ranges are inclusive in plotters: n cells span 0..=n-1.
            .build_cartesian_2d(
                (0..nc as i32 - 1).into_segmented(),
                (0..nr as i32 - 1).into_segmented(),
            )
            .map_err(err)?;
        // Row 0 at the top: the y axis counts upwards, so row r sits at nr-1-r.
        let name = |names: &[String], v: &SegmentValue<i32>, flip: bool| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                let i = *i as usize;
                let i = if flip {
                    names.len().wrapping_sub(i + 1)
                } else {
                    i
                };
                names.get(i).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        };
        let xf = |v: &SegmentValue<i32>| name(columns, v, false);
        let yf = |v: &SegmentValue<i32>| name(rows, v, true);
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(nc)
            .y_labels(nr)
            .x_label_formatter(&xf)
            .y_label_formatter(&yf)
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(err)?;
        let text = ("sans-serif", (cell as f64 * 0.4).max(9.0)).into_font();
        for (r, row) in values.iter().enumerate() {
            let y = (nr - 1 - r) as i32;
            for (c, &v) in row.iter().enumerate() {
                let t = if max > 0.0 && v.is_finite() {
                    v.abs() / max
                } else {
                    0.0
                };
                // White to the first palette blue.
                let shade = |full: u8| (255.0 - t * (255.0 - full as f64)).round() as u8;
                let fill = RGBColor(shade(0), shade(114), shade(178));
                let x = c as i32;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (SegmentValue::Exact(x), SegmentValue::Exact(y)),
                            (SegmentValue::Exact(x + 1), SegmentValue::Exact(y + 1)),
                        ],
                        fill.filled(),
                    )))
                    .map_err(err)?;
                let label = if !v.is_finite() {
                    String::new()
                } else if whole {
                    format!("{v:.0}")
                } else {
                    format!("{v:.2}")
                };
                let ink = if t > 0.55 { WHITE } else { BLACK };
                let style = text
                    .clone()
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                chart
                    .draw_series(std::iter::once(Text::new(
                        label,
                        (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                        style,
                    )))
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(Some(svg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_chart_is_svg_with_its_labels_and_one_path_per_series() {
        let s = |name: &str, k: f64| Series {
            name: name.into(),
            points: (1..=5).map(|i| (i as f64, k / i as f64)).collect(),
        };
        let svg = lines("loss", "epoch", "loss", &[s("train", 2.0), s("valid", 3.0)])
            .unwrap()
            .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for text in ["loss", "epoch", "train", "valid"] {
            // plotters writes each text on a line of its own.
            assert!(svg.contains(&format!(">\n{text}\n<")), "{text} missing");
        }
        assert!(svg.matches("<polyline").count() >= 2, "{svg}");
    }

    #[test]
    fn nothing_finite_draws_nothing_and_a_flat_series_gets_an_axis() {
        let nan = Series {
            name: "x".into(),
            points: vec![(1.0, f64::NAN)],
        };
        assert!(lines("t", "x", "y", &[nan]).unwrap().is_none());
        let flat = Series {
            name: "x".into(),
            points: vec![(1.0, 0.5)],
        };
        assert!(lines("t", "x", "y", &[flat]).unwrap().is_some());
        let r = span([2e-4, 2e-4].into_iter(), 0.05).unwrap();
        assert!(
            (r.start - 1.9e-4).abs() < 1e-12 && (r.end - 2.1e-4).abs() < 1e-12,
            "{r:?}"
        );
    }

    #[test]
    fn a_matrix_labels_each_cell_and_rejects_ragged_rows() {
        let names: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let svg = matrix(
            "confusion",
            &names,
            &names,
            &[vec![7.0, 1.0], vec![0.0, 12.0]],
            "predicted",
            "true",
        )
        .unwrap()
        .unwrap();
        for v in ["7", "1", "0", "12", "a", "b"] {
            assert!(svg.contains(&format!(">\n{v}\n<")), "{v} missing");
        }
        assert!(matrix("m", &names, &names, &[vec![1.0]], "x", "y").is_err());
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(&0.5), "0.5");
        assert_eq!(tick(&2.0), "2");
        assert_eq!(tick(&0.000012), "1.20e-5");
    }
}
