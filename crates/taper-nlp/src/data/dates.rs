//! A generated translation task that needs no download: dates written in
//! several human formats → ISO 8601 (`"Nov 29, 2026"` → `"2026-11-29"`).

use rand::Rng;

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn days_in(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Number of source formats [`format_date`] knows.
pub const NUM_FORMATS: usize = 8;

/// `day month year` written in format `f` (`f < NUM_FORMATS`): "29 November 2026",
/// "Nov 29, 2026", "29/11/2026", "November 29, 2026", "29 Nov 2026", "29.11.2026",
/// "2026/11/29", "29 november 2026".
pub fn format_date(year: u32, month: u32, day: u32, f: usize) -> String {
    let long = MONTHS[(month - 1) as usize];
    let short = &long[..3];
    match f % NUM_FORMATS {
        0 => format!("{day} {long} {year}"),
        1 => format!("{short} {day}, {year}"),
        2 => format!("{day:02}/{month:02}/{year}"),
        3 => format!("{long} {day}, {year}"),
        4 => format!("{day} {short} {year}"),
        5 => format!("{day:02}.{month:02}.{year}"),
        6 => format!("{year}/{month:02}/{day:02}"),
        _ => format!("{day} {} {year}", long.to_lowercase()),
    }
}

/// `n` (human date, ISO date) pairs, years 1900–2099, a pure function of `seed`.
pub fn generate_dates(n: usize, seed: u64) -> Vec<(String, String)> {
    let mut rng = taper_nn::init::rng_for(seed, "dates");
    (0..n)
        .map(|_| {
            let year = rng.random_range(1900..2100u32);
            let month = rng.random_range(1..=12u32);
            let day = rng.random_range(1..=days_in(year, month));
            let f = rng.random_range(0..NUM_FORMATS);
            (
                format_date(year, month, day, f),
                format!("{year}-{month:02}-{day:02}"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_seeding() {
        assert_eq!(format_date(2026, 11, 29, 0), "29 November 2026");
        assert_eq!(format_date(2026, 11, 29, 1), "Nov 29, 2026");
        assert_eq!(format_date(2026, 11, 29, 2), "29/11/2026");
        assert_eq!(generate_dates(50, 7), generate_dates(50, 7));
        assert_ne!(generate_dates(50, 7), generate_dates(50, 8));
        for (_, iso) in generate_dates(500, 1) {
            assert_eq!(iso.len(), 10);
        }
    }
}
