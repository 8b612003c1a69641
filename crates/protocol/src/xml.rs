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
        if text.chars().all(is_xml_char) {
            self.out.push_str(&quick_xml::escape::escape(text));
        } else {
            let clean: String = text.chars().map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' }).collect();
            self.out.push_str(&quick_xml::escape::escape(&clean));
        }
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
        w.text_element(name, &self.to_string());
    }
}

impl ToXml for f64 {
    fn write_xml(&self, w: &mut XmlWriter, name: &str) {
        w.text_element(name, &self.to_string());
    }
}

impl ToXml for bool {
    fn write_xml(&self, w: &mut XmlWriter, name: &str) {
        w.text_element(name, if *self { "true" } else { "false" });
    }
}

impl ToXml for DateTime {
    fn write_xml(&self, w: &mut XmlWriter, name: &str) {
        w.text_element(name, &format_timestamp(self));
    }
}

/// AWS's timestamp form, always with milliseconds: `2016-12-21T21:59:43.794Z`.
pub fn format_timestamp(t: &DateTime) -> String {
    let whole = DateTime::from_secs(t.secs());
    let base =
        whole.fmt(aws_smithy_types::date_time::Format::DateTime).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string());
    let millis = t.subsec_nanos() / 1_000_000;
    format!("{}.{millis:03}Z", base.trim_end_matches('Z'))
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
    fn text_xml_cannot_carry_is_replaced_and_the_rest_escaped() {
        let mut w = XmlWriter::new();
        w.text_element("A", "tab\t <&> \u{0}\u{1B}\u{FFFE}");
        assert_eq!(w.finish(), "<A>tab\t &lt;&amp;&gt; \u{FFFD}\u{FFFD}\u{FFFD}</A>");
        assert!(is_xml_char('\n') && is_xml_char('\u{10FFFF}') && !is_xml_char('\u{FFFF}'));
    }
}
