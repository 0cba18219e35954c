//! Line plots as inline SVG (plotters' SVG backend; no fonts are read: the browser draws the
//! text).

use anyhow::{anyhow, Result};
use plotters::prelude::*;

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
            let color = Palette99::pick(i).to_rgba();
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
}
