//! Line plots as inline SVG (plotters' SVG backend; no fonts are read: the browser draws the
//! text).

use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// Distinct, readable colours (matplotlib's "tab10"), in order.
const COLORS: [(u8, u8, u8); 8] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
];

fn color(i: usize) -> RGBAColor {
    let (r, g, b) = COLORS[i % COLORS.len()];
    RGBColor(r, g, b).to_rgba()
}

/// One line: a name and (x position, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A line plot. `x_labels` name the x positions 0, 1, … when the axis is categorical; with
/// `None` the x values are plotted as numbers.
pub fn line_plot(
    title: &str,
    x_label: &str,
    y_label: &str,
    x_labels: Option<&[String]>,
    series: &[Series],
) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 340)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
        let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
        let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
        let (y0, y1) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
        if !x0.is_finite() || !y0.is_finite() {
            return Err(anyhow!("plot {title}: no points"));
        }
        let xpad = ((x1 - x0) * 0.05).max(0.5);
        let ypad = ((y1 - y0) * 0.1).max(0.005);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d((x0 - xpad)..(x1 + xpad), (y0 - ypad)..(y1 + ypad))
            .map_err(|e| anyhow!("plot: {e}"))?;
        let labels = x_labels.map(<[String]>::to_vec);
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc(x_label)
            .y_desc(y_label)
            .x_labels(labels.as_ref().map_or(8, |l| l.len().max(2)))
            .x_label_formatter(&|x: &f64| match &labels {
                Some(l) => {
                    let i = x.round();
                    if (x - i).abs() < 1e-6 && i >= 0.0 {
                        l.get(i as usize).cloned().unwrap_or_default()
                    } else {
                        String::new()
                    }
                }
                None => format!("{x}"),
            })
            .y_label_formatter(&|y: &f64| format!("{y:.3}"))
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
        for (i, s) in series.iter().enumerate() {
            let color = color(i);
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| anyhow!("plot: {e}"))?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart
                .draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(|e| anyhow!("plot: {e}"))?;
        }
        if series.len() > 1 || series.iter().any(|s| !s.name.is_empty()) {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK.mix(0.3))
                .draw()
                .map_err(|e| anyhow!("plot: {e}"))?;
        }
        root.present().map_err(|e| anyhow!("plot: {e}"))?;
    }
    Ok(svg)
}

/// One labelled point of a scatter plot, in a named group (a colour).
pub struct Point {
    pub group: String,
    pub label: String,
    pub x: f64,
    pub y: f64,
}

/// Accuracy against inference speed (the Pareto view): x on a log scale, each point labelled;
/// groups share a colour. Points on the Pareto front (no other point is both faster and more
/// accurate) are drawn filled, the others hollow.
pub fn pareto_plot(title: &str, x_label: &str, y_label: &str, points: &[Point]) -> Result<String> {
    let finite: Vec<&Point> = points
        .iter()
        .filter(|p| p.x.is_finite() && p.x > 0.0 && p.y.is_finite())
        .collect();
    if finite.is_empty() {
        return Err(anyhow!("plot {title}: no points"));
    }
    // x is plotted as log10(samples/s) on a linear axis whose labels show samples/s.
    let (x0, x1) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.x.log10()), b.max(p.x.log10()))
        });
    let (y0, y1) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.y), b.max(p.y))
        });
    let mut groups: Vec<&str> = Vec::new();
    for p in &finite {
        if !groups.contains(&p.group.as_str()) {
            groups.push(&p.group);
        }
    }
    // Room below the points for the legend (lower left): its share of the plot's height.
    let legend = ((groups.len() as f64 * 18.0 + 16.0) / 270.0).min(0.6);
    let span = (y1 - y0).max(0.01);
    let y_top = y1 + 0.12 * span;
    let y_low = y_top - (span * 1.2) / (1.0 - legend);
    let xpad = ((x1 - x0) * 0.12).max(0.15);
    let on_front = |p: &Point| {
        !finite
            .iter()
            .any(|q| q.x >= p.x && q.y >= p.y && (q.x > p.x || q.y > p.y))
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (560, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(14)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d((x0 - xpad)..(x1 + xpad * 2.5), y_low..y_top)
            .map_err(|e| anyhow!("plot: {e}"))?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_desc(x_label)
            .y_desc(y_label)
            .x_labels(6)
            .x_label_formatter(&|x: &f64| {
                let v = 10f64.powf(*x);
                if v >= 100.0 {
                    format!("{:.0}", (v / 10.0).round() * 10.0)
                } else {
                    format!("{v:.1}")
                }
            })
            .y_label_formatter(&|y: &f64| format!("{y:.3}"))
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
        for (gi, g) in groups.iter().enumerate() {
            let color = color(gi);
            let members: Vec<&&Point> = finite.iter().filter(|p| p.group == *g).collect();
            chart
                .draw_series(members.iter().map(|p| {
                    let style = if on_front(p) {
                        color.filled()
                    } else {
                        color.stroke_width(2)
                    };
                    EmptyElement::at((p.x.log10(), p.y))
                        + Circle::new((0, 0), 5, style)
                        + Text::new(p.label.clone(), (7, -12), ("sans-serif", 11))
                }))
                .map_err(|e| anyhow!("plot: {e}"))?
                .label(g.to_string())
                .legend(move |(x, y)| Circle::new((x + 8, y), 5, color.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
        root.present().map_err(|e| anyhow!("plot: {e}"))?;
    }
    Ok(svg)
}

/// A confusion matrix as a heatmap: rows true classes, columns predicted ones; each cell shaded
/// by its share of the row and labelled with its count.
pub fn confusion_heatmap(title: &str, names: &[String], counts: &[Vec<usize>]) -> Result<String> {
    let k = names.len();
    if k == 0 || counts.len() != k || counts.iter().any(|r| r.len() != k) {
        return Err(anyhow!("plot {title}: the matrix is not {k}×{k}"));
    }
    let cell = 48i32;
    let left = 110i32;
    let top = 40i32;
    let bottom = 70i32;
    let size = (
        (left + cell * k as i32 + 20) as u32,
        (top + cell * k as i32 + bottom) as u32,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        let err = |e: DrawingAreaErrorKind<_>| anyhow!("plot: {e}");
        root.draw(&Text::new(
            title.to_string(),
            (left, 12),
            ("sans-serif", 14).into_font(),
        ))
        .map_err(err)?;
        for (i, row) in counts.iter().enumerate() {
            let total = row.iter().sum::<usize>().max(1) as f64;
            for (j, &n) in row.iter().enumerate() {
                let share = n as f64 / total;
                let (x, y) = (left + cell * j as i32, top + cell * i as i32);
                // White → blue as the share grows; the diagonal in blue, errors in red.
                let hue = if i == j {
                    (33, 102, 172)
                } else {
                    (178, 24, 43)
                };
                let mix = |c: u8| (255.0 - (255.0 - c as f64) * share.sqrt()).round() as u8;
                let color = RGBColor(mix(hue.0), mix(hue.1), mix(hue.2));
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    color.filled(),
                ))
                .map_err(err)?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    RGBColor(208, 215, 222).stroke_width(1),
                ))
                .map_err(err)?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                root.draw(&Text::new(
                    n.to_string(),
                    (x + 6, y + cell / 2 - 6),
                    ("sans-serif", 12).into_font().color(&ink),
                ))
                .map_err(err)?;
            }
            root.draw(&Text::new(
                names[i].clone(),
                (6, top + cell * i as i32 + cell / 2 - 6),
                ("sans-serif", 12).into_font(),
            ))
            .map_err(err)?;
        }
        for (j, name) in names.iter().enumerate() {
            root.draw(&Text::new(
                name.clone(),
                (left + cell * j as i32 + 4, top + cell * k as i32 + 8),
                ("sans-serif", 11)
                    .into_font()
                    .transform(FontTransform::Rotate90),
            ))
            .map_err(err)?;
        }
        root.draw(&Text::new(
            "rows: true class · columns: predicted".to_string(),
            (6, top + cell * k as i32 + bottom - 14),
            ("sans-serif", 11).into_font(),
        ))
        .map_err(err)?;
        root.present().map_err(|e| anyhow!("plot: {e}"))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_its_labels() {
        let svg = line_plot(
            "accuracy vs T",
            "distill.temperature",
            "accuracy",
            None,
            &[Series {
                name: "α=0".into(),
                points: vec![(1.0, 0.77), (2.0, 0.78), (4.0, 0.775)],
            }],
        )
        .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("accuracy vs T") && svg.contains("α=0"));
        let cat = line_plot(
            "h",
            "student.head",
            "accuracy",
            Some(&["tang".into(), "seed".into()]),
            &[Series {
                name: String::new(),
                points: vec![(0.0, 0.7), (1.0, 0.72)],
            }],
        )
        .unwrap();
        assert!(cat.contains("tang") && cat.contains("seed"));
    }

    #[test]
    fn pareto_and_heatmap_escape_their_text() {
        let svg = pareto_plot(
            "accuracy vs speed",
            "samples/s",
            "accuracy",
            &[
                Point {
                    group: "teacher".into(),
                    label: "<b>t</b>".into(),
                    x: 100.0,
                    y: 0.8,
                },
                Point {
                    group: "student".into(),
                    label: "s".into(),
                    x: 1000.0,
                    y: 0.78,
                },
            ],
        )
        .unwrap();
        assert!(svg.contains("&lt;b&gt;t&lt;/b&gt;") && !svg.contains("<b>"));
        let names = vec!["car".to_string(), "<i>x</i>".to_string()];
        let svg = confusion_heatmap("m", &names, &[vec![5, 1], vec![2, 7]]).unwrap();
        assert!(svg.contains("&lt;i&gt;x&lt;/i&gt;") && !svg.contains("<i>"));
        let packed: String = svg.chars().filter(|c| !c.is_whitespace()).collect();
        for n in ["5", "1", "2", "7"] {
            assert!(packed.contains(&format!(">{n}</text>")), "{n}");
        }
        assert!(confusion_heatmap("m", &names, &[vec![1]]).is_err());
    }
}
