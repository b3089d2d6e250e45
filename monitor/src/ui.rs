//! Rendering: a header, a grid of number tiles, an optional "results so
//! far" panel and three charts over time.
//!
//! Every `render_*` function draws into the area it is given and copes with
//! any size, down to nothing at all.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

use crate::format;
use crate::state::{DashState, Series};

/// Widths from which the tiles fit on one row and the charts side by side.
const WIDE: u16 = 120;

/// Draws the whole dashboard.
pub(crate) fn render(frame: &mut Frame, st: &DashState) {
    let area = frame.area();
    let tile_rows = if area.width >= WIDE { 1 } else { 2 };
    let results_rows = if st.results.is_empty() {
        0
    } else {
        u16::try_from(st.results.len())
            .unwrap_or(u16::MAX)
            .saturating_add(2)
    };
    let [header, tiles, results, charts] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(3 * tile_rows),
        Constraint::Length(results_rows),
        Constraint::Min(0),
    ])
    .areas(area);
    render_header(frame, header, st);
    render_tiles(frame, tiles, st, tile_rows);
    render_results(frame, results, st);
    render_charts(frame, charts, st);
}

/// The bench's lines of finished work, as given.
fn render_results(frame: &mut Frame, area: Rect, st: &DashState) {
    if st.results.is_empty() {
        return;
    }
    let block = Block::bordered().title(Line::from(" results so far ").dim());
    let lines: Vec<Line> = st.results.iter().map(|l| Line::from(l.as_str())).collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// Title, phase, elapsed time and the key to quit.
fn render_header(frame: &mut Frame, area: Rect, st: &DashState) {
    let block = Block::bordered().title(Line::from(format!(" {} ", st.title)).bold());
    let line = Line::from(vec![
        Span::from(st.phase.as_str()).bold().fg(Color::Cyan),
        Span::from("  │  elapsed "),
        Span::from(format::secs(st.elapsed)),
        Span::from("  │  q quits").dim(),
    ]);
    frame.render_widget(Paragraph::new(line).block(block), area);
}

/// The tile labels and values, in display order.
pub(crate) fn tiles(st: &DashState) -> [(&'static str, String); 7] {
    let live = &st.live;
    let latency = match (live.p50_us, live.p99_us) {
        (Some(p50), Some(p99)) => format!("{} / {}", format::num(p50), format::num(p99)),
        _ => "n/a".to_owned(),
    };
    [
        ("open connections", format::num_int(live.open)),
        ("conn/ms", format::num(live.conn_per_ms)),
        ("conn/MiB", format::opt(live.conn_per_mib)),
        ("echoes/ms", format::num(live.echoes_per_ms)),
        ("echoed MB/s", format::num(live.mb_per_s)),
        ("p50 / p99 µs", latency),
        ("server CPU %", format::opt(live.cpu)),
    ]
}

/// The big numbers, on one row or two.
fn render_tiles(frame: &mut Frame, area: Rect, st: &DashState, rows: u16) {
    let tiles = tiles(st);
    let per_row = tiles.len().div_ceil(usize::from(rows.max(1)));
    let row_areas = Layout::vertical(vec![Constraint::Length(3); usize::from(rows)]).split(area);
    for (row_area, chunk) in row_areas.iter().zip(tiles.chunks(per_row)) {
        let cells = Layout::horizontal(vec![Constraint::Ratio(1, per_row as u32); per_row])
            .split(*row_area);
        for (cell, (label, value)) in cells.iter().zip(chunk) {
            render_tile(frame, *cell, label, value);
        }
    }
}

fn render_tile(frame: &mut Frame, area: Rect, label: &str, value: &str) {
    let block = Block::bordered().title(Line::from(label).dim());
    let text = Paragraph::new(Line::from(value).bold().fg(Color::Yellow)).centered();
    frame.render_widget(text.block(block), area);
}

/// Connections/ms, echoes/ms and open connections over time.
fn render_charts(frame: &mut Frame, area: Rect, st: &DashState) {
    let charts = [
        ("connections/ms", &st.conn_series, Color::Green),
        ("echoes/ms", &st.echo_series, Color::Magenta),
        ("open connections", &st.open_series, Color::Cyan),
    ];
    let constraints = vec![Constraint::Ratio(1, 3); 3];
    let areas = if area.width >= WIDE {
        Layout::horizontal(constraints).split(area)
    } else {
        Layout::vertical(constraints).split(area)
    };
    for (chart_area, (title, series, color)) in areas.iter().zip(charts) {
        render_chart(frame, *chart_area, title, series, color);
    }
}

/// The x and y ranges of a series: time from the first to the last point
/// (at least one second), values from zero to a little above the maximum.
fn bounds(points: &[(f64, f64)]) -> ([f64; 2], [f64; 2]) {
    let first = points.first().map_or(0.0, |p| p.0);
    let last = points.last().map_or(0.0, |p| p.0).max(first + 1.0);
    let top = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.1 } else { 1.0 };
    ([first, last], [0.0, top])
}

fn render_chart(frame: &mut Frame, area: Rect, title: &str, series: &Series, color: Color) {
    let points: Vec<(f64, f64)> = series.iter().copied().collect();
    let now = points
        .last()
        .map_or_else(|| "n/a".to_owned(), |p| format::num(p.1));
    let block = Block::bordered().title(Line::from(format!(" {title}: {now} ")));
    let (x, y) = bounds(&points);

    let dataset = Dataset::default()
        .marker(Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::default().fg(color))
        .data(&points);
    let x_axis = Axis::default()
        .bounds(x)
        .labels([format::secs(x[0]), format::secs(x[1])])
        .style(Style::default().dim());
    let y_axis = Axis::default()
        .bounds(y)
        .labels(["0".to_owned(), format::num(y[1])])
        .style(Style::default().dim());
    let chart = Chart::new(vec![dataset])
        .block(block)
        .x_axis(x_axis)
        .y_axis(y_axis);
    frame.render_widget(chart, area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{snap, with_latency};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    /// Draws `st` on a `w` x `h` test terminal and returns its rows.
    fn draw(st: &DashState, w: u16, h: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
        terminal.draw(|f| render(f, st)).unwrap();
        let buffer = terminal.backend().buffer();
        (0..h)
            .map(|y| (0..w).map(|x| buffer[(x, y)].symbol()).collect::<String>())
            .collect()
    }

    /// Three seconds of a storm at 2,000 conn/s with echoes and memory.
    fn storm() -> DashState {
        let mut st = DashState::new("tern bench");
        for i in 0..=12u32 {
            let t = f64::from(i) * 0.25;
            let opened = u64::from(i) * 500;
            let echoes = u64::from(i) * 3_000;
            let rss = 10.0 * 1048576.0 + opened as f64 * 2048.0;
            let latencies: Vec<f64> = (0..echoes).map(|e| 100.0 + (e % 100) as f64).collect();
            let s = with_latency(
                snap(opened, opened as f64, echoes, echoes * 100, Some(rss)),
                &latencies,
            );
            st.update(
                t,
                format!("connection storm {}/10,000", format::int(opened)),
                &s,
            );
        }
        st
    }

    #[test]
    fn tiles_show_the_formatted_figures() {
        let st = storm();
        let t = tiles(&st);
        assert_eq!(t[0], ("open connections", "6,000".to_owned()));
        assert_eq!(t[1].1, "2.00");
        assert_eq!(t[2].1, "512");
        assert_eq!(t[3].1, "12.0");
        assert_eq!(t[4].1, "1.20");
        assert_eq!(t[5].1, "149 / 198");
        assert_eq!(t[6].1, "n/a");
    }

    #[test]
    fn wide_dashboard_shows_header_tiles_and_charts() {
        let rows = draw(&storm(), 200, 60);
        let screen = rows.join("\n");
        for needle in [
            "tern bench",
            "connection storm 6,000/10,000",
            "elapsed 3.0 s",
            "q quits",
            "open connections",
            "6,000",
            "conn/MiB",
            "512",
            "149 / 198",
            "connections/ms: 2.00",
            "echoes/ms: 12.0",
        ] {
            assert!(screen.contains(needle), "{needle:?} missing from\n{screen}");
        }
        // All tiles share one row on a wide screen.
        let tile_row = rows.iter().find(|r| r.contains("conn/ms")).unwrap();
        assert!(tile_row.contains("server CPU %"), "{tile_row}");
        // The charts drew some braille.
        assert!(screen
            .chars()
            .any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)));
    }

    #[test]
    fn narrow_dashboard_wraps_tiles_onto_two_rows() {
        let rows = draw(&storm(), 100, 30);
        let first = rows.iter().position(|r| r.contains("conn/ms")).unwrap();
        let second = rows
            .iter()
            .position(|r| r.contains("server CPU %"))
            .unwrap();
        assert!(second > first);
        assert!(rows.join("\n").contains("6,000"));
    }

    #[test]
    fn results_panel_lists_the_given_lines_between_tiles_and_charts() {
        let mut st = storm();
        st.results = vec![
            "server   conn/ms  echoes/ms".to_owned(),
            "raw-tcp     31.2      120.5".to_owned(),
            "tern        28.9      101.7".to_owned(),
        ];
        let rows = draw(&st, 200, 60);
        let title = rows.iter().position(|r| r.contains("results so far"));
        let title = title.unwrap_or_else(|| panic!("no panel in\n{}", rows.join("\n")));
        let tiles = rows
            .iter()
            .position(|r| r.contains("server CPU %"))
            .unwrap();
        let chart = rows
            .iter()
            .position(|r| r.contains("connections/ms:"))
            .unwrap();
        assert!(tiles < title && title < chart, "{tiles} {title} {chart}");
        for (i, line) in st.results.iter().enumerate() {
            assert!(
                rows[title + 1 + i].contains(line.as_str()),
                "{}",
                rows[title + 1 + i]
            );
        }
        // Without lines there is no panel.
        let plain = draw(&storm(), 200, 60).join("\n");
        assert!(!plain.contains("results so far"));
    }

    #[test]
    fn tiny_and_empty_screens_do_not_panic() {
        let empty = DashState::new("tern");
        let mut busy = storm();
        busy.results = vec!["tern 1.0".to_owned(); 40];
        for (w, h) in [(20, 5), (1, 1), (0, 0), (5, 40), (200, 3), (200, 60)] {
            draw(&empty, w, h);
            draw(&busy, w, h);
        }
        let screen = draw(&empty, 80, 24).join("\n");
        assert!(screen.contains("n/a"), "{screen}");
    }
}
