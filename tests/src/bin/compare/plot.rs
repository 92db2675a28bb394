//! The PNG plot of a [`Summary`]: one panel per traffic, a group of bars
//! per rule count, a bar per filter: its median ratio to no filter.
//!
//! Drawn with plotters' bitmap backend and encoded by the pure-Rust PNG
//! encoder; text is rendered with ab_glyph from DejaVu Sans, read from
//! Debian's `fonts-dejavu-core` (`cargo xtask setup` installs it), so no
//! system library is linked.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

use crate::filters::Filter;
use crate::measure::Summary;

/// Where `fonts-dejavu-core` puts its sans-serif font.
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const SIZE: (u32, u32) = (1280, 660);

fn color(filter: Filter) -> RGBColor {
    match filter {
        Filter::None => RGBColor(120, 120, 120),
        Filter::Sg => RGBColor(214, 39, 40),
        Filter::Iptables => RGBColor(31, 119, 180),
        Filter::Nftables => RGBColor(44, 160, 44),
        Filter::NftablesSet => RGBColor(148, 103, 189),
    }
}

/// Registers [`FONT`] as "sans-serif"; fails with what to install.
fn load_font() -> Result<()> {
    let bytes = std::fs::read(FONT).with_context(|| {
        format!(
            "reading the plot's font {FONT} (package fonts-dejavu-core: run `cargo xtask setup`)"
        )
    })?;
    // plotters keeps fonts for the whole run.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{FONT} is not a font plotters can read"))
}

/// Draws `summary` into `path` (PNG) as grouped bars: per panel a
/// traffic, per group a rule count, per bar a filter's median ratio to no
/// filter, which is the grey line at 1. `subtitle` names the machine and
/// the date.
pub fn draw(summary: &Summary, path: &Path, subtitle: &str) -> Result<()> {
    load_font()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(e)?;
    let grey = RGBColor(110, 110, 110);
    let (head, body) = root.split_vertically(104);
    head.draw(&Text::new(
        format!(
            "Receive rate through a veth, relative to no filter (median of {} rounds)",
            summary.rounds
        ),
        (20, 10),
        ("sans-serif", 24).into_font(),
    ))
    .map_err(e)?;
    head.draw(&Text::new(
        subtitle.to_owned(),
        (20, 42),
        ("sans-serif", 15).into_font().color(&grey),
    ))
    .map_err(e)?;
    // The legend: one swatch per filter, then the reference line.
    let bars: Vec<Filter> = summary
        .filters
        .iter()
        .copied()
        .filter(|&f| f != Filter::None)
        .collect();
    let legend_font = ("sans-serif", 16).into_font();
    let mut x = 20;
    for &f in &bars {
        head.draw(&Rectangle::new([(x, 72), (x + 16, 88)], color(f).filled()))
            .map_err(e)?;
        head.draw(&Text::new(f.label(), (x + 22, 71), legend_font.clone()))
            .map_err(e)?;
        let (w, _) = head
            .estimate_text_size(f.label(), &legend_font.clone().into_text_style(&head))
            .map_err(e)?;
        x += 22 + w as i32 + 28;
    }
    head.draw(&PathElement::new(
        vec![(x, 80), (x + 24, 80)],
        grey.stroke_width(2),
    ))
    .map_err(e)?;
    head.draw(&Text::new(
        "no filter (1.00)",
        (x + 30, 71),
        ("sans-serif", 16).into_font(),
    ))
    .map_err(e)?;

    let rules = &summary.rules;
    let mut top = 1.0f64;
    for &n in rules {
        for &t in &summary.traffics {
            for &f in &bars {
                if let Some(c) = summary.cell(n, t, f) {
                    top = top.max(c.ratio);
                }
            }
        }
    }
    let y_max = (top * 1.12).max(1.15);
    let panels = body.split_evenly((1, summary.traffics.len().max(1)));
    for (panel, &traffic) in panels.iter().zip(&summary.traffics) {
        let base: Vec<String> = rules
            .iter()
            .filter_map(|&n| summary.cell(n, traffic, Filter::None))
            .map(|c| format!("{:.0}", c.pps / 1000.0))
            .collect();
        let mut chart = ChartBuilder::on(panel)
            .caption(traffic.label(), ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(56)
            .y_label_area_size(60)
            // Integer ranges are inclusive here: 0..k-1 is k segments.
            .build_cartesian_2d(
                (0..rules.len().saturating_sub(1)).into_segmented(),
                0f64..y_max,
            )
            .map_err(e)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc(format!(
                "accept rules (no filter: {} kpps)",
                base.join(" / ")
            ))
            .y_desc("receive rate / no filter")
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    rules.get(*i).map(|n| n.to_string()).unwrap_or_default()
                }
                SegmentValue::Last => String::new(),
            })
            .label_style(("sans-serif", 15))
            .axis_desc_style(("sans-serif", 15))
            .draw()
            .map_err(e)?;
        // Bars are drawn in pixels: the segmented axis has no coordinate
        // for a position within a segment.
        let (xs, _) = chart.plotting_area().get_pixel_range();
        let segment = f64::from(xs.end - xs.start) / rules.len().max(1) as f64;
        let width = segment * 0.8 / bars.len().max(1) as f64;
        let y = |ratio: f64| chart.backend_coord(&(SegmentValue::CenterOf(0), ratio)).1;
        let center = |i: usize| f64::from(chart.backend_coord(&(SegmentValue::CenterOf(i), 0.0)).0);
        for (i, &n) in rules.iter().enumerate() {
            for (j, &f) in bars.iter().enumerate() {
                let Some(cell) = summary.cell(n, traffic, f) else {
                    continue;
                };
                let x0 = center(i) - segment * 0.4 + width * j as f64;
                let (x0, x1) = (x0.round() as i32, (x0 + width).round() as i32 - 2);
                root.draw(&Rectangle::new(
                    [(x0, y(cell.ratio)), (x1, y(0.0))],
                    color(f).filled(),
                ))
                .map_err(e)?;
                root.draw(&Text::new(
                    format!("{:.2}", cell.ratio),
                    ((x0 + x1) / 2, y(cell.ratio) - 3),
                    ("sans-serif", 13)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                ))
                .map_err(e)?;
            }
        }
        root.draw(&PathElement::new(
            vec![(xs.start, y(1.0)), (xs.end, y(1.0))],
            grey.stroke_width(2),
        ))
        .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::Sample;
    use crate::traffic::Traffic;

    /// Draws made-up figures; `SG_COMPARE_PLOT_TEST=FILE` keeps the PNG
    /// there, to look at.
    #[test]
    fn draws_a_png() {
        let filters = [
            Filter::None,
            Filter::Sg,
            Filter::Iptables,
            Filter::Nftables,
            Filter::NftablesSet,
        ];
        let traffics = [Traffic::Established, Traffic::New];
        let rules = [10, 100, 1000];
        let mut samples = Vec::new();
        for (k, &n) in rules.iter().enumerate() {
            for &traffic in &traffics {
                for (j, &filter) in filters.iter().enumerate() {
                    let pps = 1e6 / (1.0 + (j * (k + 1)) as f64);
                    samples.push(Sample {
                        round: 0,
                        rules: n,
                        filter,
                        traffic,
                        pps,
                    });
                }
            }
        }
        let summary = Summary::new(&samples, &rules, &traffics, &filters);
        let dir = tempfile::tempdir().unwrap();
        let path = std::env::var_os("SG_COMPARE_PLOT_TEST")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| dir.path().join("docs/compare.png"));
        draw(&summary, &path, "made-up figures").unwrap();
        let png = std::fs::read(&path).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    }
}
