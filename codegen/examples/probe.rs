fn main() {
    let path = std::env::args().nth(1).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let file = sluice_codegen::source::SourceFile::new(path, text);
    match sluice_codegen::compile(&file) {
        Ok(c) => { print!("{}", sluice_codegen::diag::render_human(&file, &c.warnings, false)); println!("OK {} pipelines", c.config.pipelines.len()); }
        Err(d) => print!("{}", sluice_codegen::diag::render_human(&file, &d, false)),
    }
}
