//! The country calling code a phone number starts with (ITU-T E.164: `1`, `44`, `91`, …):
//! the market a message went to, for spend per market. It names a country, not a person.
//!
//! Assigned codes form a prefix code (no code is the start of another), so the first one to
//! match among 1, 2 and 3 leading digits is the answer. A lookup in three small sorted tables
//! costs nanoseconds per status, where a full number-parsing library would cost microseconds
//! on the hot path for an answer this coarse.

const ONE: &[&str] = &["1", "7"];

const TWO: &[&str] = &[
    "20", "27", "30", "31", "32", "33", "34", "36", "39", "40", "41", "43", "44", "45", "46", "47",
    "48", "49", "51", "52", "53", "54", "55", "56", "57", "58", "60", "61", "62", "63", "64", "65",
    "66", "81", "82", "84", "86", "90", "91", "92", "93", "94", "95", "98",
];

const THREE: &[&str] = &[
    "211", "212", "213", "216", "218", "220", "221", "222", "223", "224", "225", "226", "227",
    "228", "229", "230", "231", "232", "233", "234", "235", "236", "237", "238", "239", "240",
    "241", "242", "243", "244", "245", "246", "247", "248", "249", "250", "251", "252", "253",
    "254", "255", "256", "257", "258", "260", "261", "262", "263", "264", "265", "266", "267",
    "268", "269", "290", "291", "297", "298", "299", "350", "351", "352", "353", "354", "355",
    "356", "357", "358", "359", "370", "371", "372", "373", "374", "375", "376", "377", "378",
    "380", "381", "382", "383", "385", "386", "387", "389", "420", "421", "423", "500", "501",
    "502", "503", "504", "505", "506", "507", "508", "509", "590", "591", "592", "593", "594",
    "595", "596", "597", "598", "599", "670", "672", "673", "674", "675", "676", "677", "678",
    "679", "680", "681", "682", "683", "685", "686", "687", "688", "689", "690", "691", "692",
    "800", "808", "850", "852", "853", "855", "856", "870", "878", "880", "881", "882", "883",
    "886", "888", "960", "961", "962", "963", "964", "965", "966", "967", "968", "970", "971",
    "972", "973", "974", "975", "976", "977", "979", "992", "993", "994", "995", "996", "998",
];

/// The calling code `digits` (an E.164 number without `+`) starts with, if any is assigned.
pub fn calling_code(digits: &str) -> Option<&'static str> {
    [ONE, TWO, THREE]
        .into_iter()
        .enumerate()
        .find_map(|(i, table)| {
            let prefix = digits.get(..i + 1)?;
            table.binary_search(&prefix).ok().map(|at| table[at])
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_markets() {
        for (number, code) in [
            ("919876544321", "91"),
            ("15551234567", "1"),
            ("447700900123", "44"),
            ("971501234567", "971"),
            ("6281361905133", "62"),
            ("79161234567", "7"),
            ("5511987654321", "55"),
            ("2348012345678", "234"),
        ] {
            assert_eq!(calling_code(number), Some(code), "{number}");
        }
        assert_eq!(calling_code(""), None);
        assert_eq!(calling_code("0"), None);
        assert_eq!(calling_code("28"), None, "28 is unassigned");
    }

    #[test]
    fn tables_are_sorted_and_prefix_free() {
        let all: Vec<&str> = [ONE, TWO, THREE].concat();
        for table in [ONE, TWO, THREE] {
            assert!(table.windows(2).all(|w| w[0] < w[1]), "sorted: {table:?}");
        }
        for a in &all {
            for b in &all {
                assert!(a == b || !b.starts_with(a), "{a} is a prefix of {b}");
            }
        }
    }
}
