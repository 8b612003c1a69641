//! [`XmlWriter`] and [`ToXml`]: AWS Query responses and errors as XML.

use aws_smithy_types::DateTime;

use crate::{ApiError, XML_NAMESPACE};

/// Builds an XML document into a string. Element names come from the model and are
/// trusted; text is escaped.
#[derive(Debug, Default)]
pub struct XmlWriter {
    out: String,
}

impl XmlWriter {
    pub fn new() -> Self {
        Self { out: String::with_capacity(1024) }
    }

    pub fn open(&mut self, name: &str) {
        self.out.push('<');
        self.out.push_str(name);
        self.out.push('>');
    }

    pub fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    /// Text is escaped, and a character XML 1.0 cannot carry (which the decoder refuses,
    /// but a state dir may hold from an older release) becomes U+FFFD: the document stays
    /// well-formed whatever it is given.
    pub fn text_element(&mut self, name: &str, text: &str) {
        self.open(name);
        if !escape_ascii(&mut self.out, text) {
            if text.chars().all(is_xml_char) {
                self.out.push_str(&quick_xml::escape::escape(text));
            } else {
                let clean: String = text.chars().map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' }).collect();
                self.out.push_str(&quick_xml::escape::escape(&clean));
            }
        }
        self.close(name);
    }

    /// An element whose text needs no escaping (numbers, timestamps), formatted in place.
    fn formatted_element(&mut self, name: &str, text: std::fmt::Arguments<'_>) {
        use std::fmt::Write as _;
        self.open(name);
        let _ = self.out.write_fmt(text);
        self.close(name);
    }

    /// A structure member: skipped when absent.
    pub fn member<T: ToXml>(&mut self, name: &str, value: &Option<T>) {
        if let Some(value) = value {
            value.write_xml(self, name);
        }
    }

    /// A list member: `<name><member_name>…</member_name>…</name>`; skipped when absent.
    pub fn list<T: ToXml>(&mut self, name: &str, member_name: &str, items: &Option<Vec<T>>) {
        if let Some(items) = items {
            self.items(name, member_name, items);
        }
    }

    /// A list that is always present.
    pub fn items<T: ToXml>(&mut self, name: &str, member_name: &str, items: &[T]) {
        self.open(name);
        for item in items {
            item.write_xml(self, member_name);
        }
        self.close(name);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Appends `text` escaped as quick-xml escapes it (`<>&'"`) when it is all ASCII that XML
/// can carry, in one pass and without an intermediate string; false (nothing appended)
/// otherwise, for the general path to handle. Nearly every text the API writes is such.
fn escape_ascii(out: &mut String, text: &str) -> bool {
    let bytes = text.as_bytes();
    if !bytes.iter().all(|&b| b.is_ascii() && (b >= 0x20 || matches!(b, b'\t' | b'\n' | b'\r'))) {
        return false;
    }
    let mut plain = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped = match b {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'\'' => "&apos;",
            b'"' => "&quot;",
            _ => continue,
        };
        out.push_str(&text[plain..i]);
        out.push_str(escaped);
        plain = i + 1;
    }
    out.push_str(&text[plain..]);
    true
}

/// Whether XML 1.0 can carry `c` (its `Char` production): tab, newline, carriage return,
/// and everything from U+0020 but surrogates and U+FFFE/U+FFFF.
pub fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// A shape that can be written as an XML element.
pub trait ToXml {
    fn write_xml(&self, w: &mut XmlWriter, name: &str);
}

impl ToXml for String {
    fn write_xml(&self, w: &mut XmlWriter, name: &str) {
        w.text_element(name, self);
    }
}

impl ToXml for i32 {
    fn write_xml(&self, w: &mut XmlWriter, name: &str) {
        w.formatted_element(name, format_args!("{self}"));
    }
}

impl ToXml for f64 {
    fn write_xml(&self, w: &mut XmlWriter, name: &str) {
        w.formatted_element(name, format_args!("{self}"));
    }
}

impl ToXml for bool {
    fn write_xml(&self, w: &mut XmlWriter, name: &str) {
        w.text_element(name, if *self { "true" } else { "false" });
    }
}

impl ToXml for DateTime {
    fn write_xml(&self, w: &mut XmlWriter, name: &str) {
        match Civil::of(self) {
            Some(c) => w.formatted_element(name, format_args!("{c}")),
            None => w.text_element(name, &format_timestamp(self)),
        }
    }
}

/// AWS's timestamp form, always with milliseconds: `2016-12-21T21:59:43.794Z`.
pub fn format_timestamp(t: &DateTime) -> String {
    if let Some(civil) = Civil::of(t) {
        return civil.to_string();
    }
    let whole = DateTime::from_secs(t.secs());
    let base =
        whole.fmt(aws_smithy_types::date_time::Format::DateTime).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string());
    let millis = t.subsec_nanos() / 1_000_000;
    format!("{}.{millis:03}Z", base.trim_end_matches('Z'))
}

/// Year, month and day of the day `days` after 1970-01-01, in the proleptic Gregorian
/// calendar (Howard Hinnant's days-to-civil).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// A UTC time of years 1970 to 9999 in calendar terms, written in AWS's form without the
/// allocations of going through `DateTime::fmt` (every Describe writes several per item).
struct Civil {
    year: i64,
    month: i64,
    day: i64,
    secs_of_day: i64,
    millis: u32,
}

impl Civil {
    fn of(t: &DateTime) -> Option<Self> {
        let secs = t.secs();
        // Up to the end of 9999, where four digits of year end.
        if !(0..253_402_300_800).contains(&secs) {
            return None;
        }
        let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
        Some(Self { year, month, day, secs_of_day: secs.rem_euclid(86_400), millis: t.subsec_nanos() / 1_000_000 })
    }
}

impl std::fmt::Display for Civil {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (h, m, s) = (self.secs_of_day / 3600, self.secs_of_day / 60 % 60, self.secs_of_day % 60);
        write!(f, "{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}.{:03}Z", self.year, self.month, self.day, self.millis)
    }
}

/// A shape whose members form the body of an operation's `<OpResult>`.
pub trait XmlMembers {
    fn write_members(&self, w: &mut XmlWriter);
}

impl XmlMembers for () {
    fn write_members(&self, _: &mut XmlWriter) {}
}

/// `<OpResponse xmlns=…><OpResult>…</OpResult><ResponseMetadata>…` — the result element comes
/// first, since the Rust SDK reads the first child. Operations without output omit it.
pub fn response<T: XmlMembers>(operation: &str, output: Option<&T>, request_id: &str) -> String {
    let mut w = XmlWriter::new();
    let response = format!("{operation}Response");
    w.out.push_str(&format!("<{response} xmlns=\"{XML_NAMESPACE}\">"));
    if let Some(output) = output {
        let result = format!("{operation}Result");
        w.open(&result);
        output.write_members(&mut w);
        w.close(&result);
    }
    w.open("ResponseMetadata");
    w.text_element("RequestId", request_id);
    w.close("ResponseMetadata");
    w.close(&response);
    w.finish()
}

/// `<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/></ErrorResponse>`.
pub fn error_response(error: &ApiError, request_id: &str) -> String {
    let mut w = XmlWriter::new();
    w.out.push_str(&format!("<ErrorResponse xmlns=\"{XML_NAMESPACE}\">"));
    w.open("Error");
    w.text_element("Type", error.fault_type());
    w.text_element("Code", error.code);
    w.text_element("Message", &error.message);
    w.close("Error");
    w.text_element("RequestId", request_id);
    w.close("ErrorResponse");
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_the_smithy_formatter() {
        let smithy = |t: &DateTime| {
            let base = DateTime::from_secs(t.secs()).fmt(aws_smithy_types::date_time::Format::DateTime).unwrap();
            format!("{}.{:03}Z", base.trim_end_matches('Z'), t.subsec_nanos() / 1_000_000)
        };
        let mut millis: i64 = 0;
        while millis < 253_402_300_800_000 {
            let t = DateTime::from_millis(millis);
            assert_eq!(format_timestamp(&t), smithy(&t), "{millis}");
            millis = millis * 3 + 86_399_999;
        }
        for millis in [951_782_400_000, 1_709_164_800_123, 4_107_542_399_999, 253_402_300_799_999] {
            let t = DateTime::from_millis(millis);
            assert_eq!(format_timestamp(&t), smithy(&t), "{millis}");
        }
    }

    #[test]
    fn ascii_text_is_escaped_as_quick_xml_escapes_it() {
        for text in ["plain", "a<b>c&d'e\"f", "<", "&&", "", "tab\tnew\nline\r"] {
            let mut w = XmlWriter::new();
            w.text_element("A", text);
            assert_eq!(w.finish(), format!("<A>{}</A>", quick_xml::escape::escape(text)));
        }
    }

    #[test]
    fn text_xml_cannot_carry_is_replaced_and_the_rest_escaped() {
        let mut w = XmlWriter::new();
        w.text_element("A", "tab\t <&> \u{0}\u{1B}\u{FFFE}");
        assert_eq!(w.finish(), "<A>tab\t &lt;&amp;&gt; \u{FFFD}\u{FFFD}\u{FFFD}</A>");
        assert!(is_xml_char('\n') && is_xml_char('\u{10FFFF}') && !is_xml_char('\u{FFFF}'));
    }
}
