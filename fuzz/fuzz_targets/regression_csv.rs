//! Feature/target CSV tables of taper-regression, with and without a header.
#![no_main]
use libfuzzer_sys::fuzz_target;
use taper_regression::data::read_csv;
use taper_regression::CsvOptions;

fuzz_target!(|data: &[u8]| {
    let src = std::path::Path::new("fuzz.csv");
    let _ = read_csv(data, src, &CsvOptions::default());
    let _ = read_csv(
        data,
        src,
        &CsvOptions {
            has_header: false,
            ..CsvOptions::target_index(0)
        },
    );
    let _ = read_csv(data, src, &CsvOptions::target_name("y"));
});
