//! A chart's SVG rendered to PNG, for the report's `.png` files.

use crate::error::{Error, Result};

/// Renders SVG text to PNG bytes with `resvg`, text in the system's fonts
/// (sans-serif; DejaVu Sans where installed). Without any font the text is
/// left out, the rest is drawn.
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    static OPTIONS: std::sync::OnceLock<usvg::Options<'static>> = std::sync::OnceLock::new();
    let options = OPTIONS.get_or_init(|| {
        let mut options = usvg::Options::default();
        let db = options.fontdb_mut();
        db.load_system_fonts();
        // plotters asks for "sans-serif": map it to a sans face that exists.
        let families: Vec<String> = db
            .faces()
            .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
            .collect();
        let preferred = [
            "DejaVu Sans",
            "Liberation Sans",
            "Noto Sans",
            "Arial",
            "Helvetica",
        ];
        let chosen = preferred
            .iter()
            .find(|p| families.iter().any(|f| f == *p))
            .map(|p| p.to_string())
            .or_else(|| families.iter().find(|f| f.contains("Sans")).cloned())
            .or_else(|| families.first().cloned());
        if let Some(family) = chosen {
            db.set_sans_serif_family(family.clone());
            options.font_family = family;
        }
        options
    });
    let fail = |message: String| Error::Figure { message };
    let tree = usvg::Tree::from_str(svg, options)
        .map_err(|e| fail(format!("cannot read the SVG: {e}")))?;
    let size = tree.size().to_int_size();
    // Twice the SVG's size: sharp on high-density screens and in print.
    let mut pixmap = tiny_skia::Pixmap::new(2 * size.width(), 2 * size.height())
        .ok_or_else(|| fail("empty figure".into()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(2.0, 2.0),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| fail(format!("cannot encode PNG: {e}")))
}
