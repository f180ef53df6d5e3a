//! Line charts of per-interval series as inline SVG, drawn with plotters. Shared by the HTML
//! report (and meant for the dashboard).

use plotters::prelude::*;

/// One line of a chart.
pub struct Series<'a> {
    pub label: &'a str,
    /// (seconds since start, value)
    pub points: Vec<(f64, f64)>,
}

/// Distinguishable colours for lines (Okabe–Ito palette, readable by colour-blind people).
const COLOURS: [RGBColor; 6] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
];

/// An SVG line chart with a title, a unit on the y axis and seconds on the x axis.
pub fn line_chart(title: &str, unit: &str, series: &[Series<'_>]) -> String {
    line_chart_with_marks(title, unit, series, &[])
}

/// A line chart with dashed vertical marks at `marks` seconds (e.g. the ends of load stages).
pub fn line_chart_with_marks(title: &str, unit: &str, series: &[Series<'_>], marks: &[f64]) -> String {
    let mut svg = String::new();
    {
        let backend = SVGBackend::with_string(&mut svg, (720, 260));
        if let Err(error) = draw(backend, title, unit, series, marks) {
            tracing::warn!(%error, title, "cannot draw chart");
        }
    }
    svg
}

fn draw(
    backend: SVGBackend<'_>,
    title: &str,
    unit: &str,
    series: &[Series<'_>],
    marks: &[f64],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = backend.into_drawing_area();
    root.fill(&WHITE)?;
    let max_x = series
        .iter()
        .flat_map(|line| line.points.iter().map(|(x, _)| *x))
        .fold(1.0, f64::max);
    let marks: Vec<f64> = marks
        .iter()
        .copied()
        .filter(|mark| *mark > 0.0 && *mark <= max_x)
        .collect();
    let max_y = series
        .iter()
        .flat_map(|line| line.points.iter().map(|(_, y)| *y))
        .fold(0.0, f64::max);
    let top = if max_y > 0.0 { max_y * 1.1 } else { 1.0 };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(32)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..max_x, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc(unit)
        .y_label_formatter(&|value| human(*value))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    // Stage boundaries: dashed grey verticals.
    for mark in &marks {
        chart.draw_series(DashedLineSeries::new(
            [(*mark, 0.0), (*mark, top)],
            6,
            4,
            RGBColor(120, 120, 120).stroke_width(1),
        ))?;
    }
    for (index, line) in series.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), colour.stroke_width(2)))?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2)));
    }
    if series.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(RGBColor(200, 200, 200))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// 12345 -> "12.3k".
fn human(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e9 {
        format!("{:.1}G", value / 1e9)
    } else if magnitude >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if magnitude >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else if magnitude >= 10.0 || magnitude == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_lines_and_labels() {
        let svg = line_chart(
            "New Connections/s",
            "connections per second",
            &[
                Series {
                    label: "opened",
                    points: vec![(0.0, 10.0), (1.0, 1500.0), (2.0, 20.0)],
                },
                Series {
                    label: "failed",
                    points: vec![(0.0, 0.0), (1.0, 3.0), (2.0, 0.0)],
                },
            ],
        );
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        assert!(svg.contains("New Connections/s"));
        assert!(svg.contains("<polyline"), "line series drawn");
        let line = || {
            vec![Series {
                label: "a",
                points: vec![(0.0, 1.0), (10.0, 2.0)],
            }]
        };
        let shapes = |svg: &str| svg.matches("<polyline").count() + svg.matches("<line").count();
        let plain = line_chart("t", "u", &line());
        let marked = line_chart_with_marks("t", "u", &line(), &[5.0]);
        assert!(shapes(&marked) > shapes(&plain), "the stage mark is drawn");
        let outside = line_chart_with_marks("t", "u", &line(), &[50.0]);
        assert_eq!(shapes(&outside), shapes(&plain), "marks past the data are left out");
        assert!(
            svg.contains("1.5k") || svg.contains("1.4k") || svg.contains("1.2k") || svg.contains("1.0k"),
            "human y labels"
        );
    }
}
