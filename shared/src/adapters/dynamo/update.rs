//! UpdateItem expressions built from attribute-name constants: every name in
//! an expression goes through a `#name` placeholder registered here, so no
//! attribute is spelled as a string literal in an expression.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::schema::Item;

/// An UpdateItem expression under construction: `SET` and `REMOVE` clauses,
/// a condition, and their placeholders.
#[derive(Debug, Default)]
pub(super) struct Update {
    sets: Vec<String>,
    removes: Vec<String>,
    adds: Vec<String>,
    conditions: Vec<String>,
    pub(super) names: HashMap<String, String>,
    pub(super) values: Item,
}

impl Update {
    /// The placeholder of attribute `field`, registered for this expression.
    pub fn name(&mut self, field: &str) -> String {
        let placeholder = format!("#{field}");
        self.names.insert(placeholder.clone(), field.to_owned());
        placeholder
    }

    /// `SET #field = :field`.
    pub fn set(&mut self, field: &str, value: AttributeValue) -> &mut Self {
        let name = self.name(field);
        self.values.insert(format!(":{field}"), value);
        self.sets.push(format!("{name} = :{field}"));
        self
    }

    /// `SET #field = <rhs>`, where `rhs` is an expression over placeholders.
    pub fn set_expr(&mut self, field: &str, rhs: &str) -> &mut Self {
        let name = self.name(field);
        self.sets.push(format!("{name} = {rhs}"));
        self
    }

    pub fn remove(&mut self, field: &str) -> &mut Self {
        let name = self.name(field);
        self.removes.push(name);
        self
    }

    /// `ADD #field <placeholder>`: adds a number (creating the attribute).
    pub fn add(&mut self, field: &str, placeholder: &str) -> &mut Self {
        let name = self.name(field);
        self.adds.push(format!("{name} {placeholder}"));
        self
    }

    pub fn value(&mut self, placeholder: &str, value: AttributeValue) -> &mut Self {
        self.values.insert(placeholder.to_owned(), value);
        self
    }

    /// Adds a clause the item must satisfy; clauses are joined with `AND`.
    pub fn condition(&mut self, clause: impl Into<String>) -> &mut Self {
        self.conditions.push(clause.into());
        self
    }

    pub fn expression(&self) -> String {
        [
            ("SET", &self.sets),
            ("REMOVE", &self.removes),
            ("ADD", &self.adds),
        ]
        .iter()
        .filter(|(_, parts)| !parts.is_empty())
        .map(|(keyword, parts)| format!("{keyword} {}", parts.join(", ")))
        .collect::<Vec<_>>()
        .join(" ")
    }

    /// The condition, every clause parenthesised; `None` without clauses.
    pub fn condition_expression(&self) -> Option<String> {
        (!self.conditions.is_empty()).then(|| {
            self.conditions
                .iter()
                .map(|c| format!("({c})"))
                .collect::<Vec<_>>()
                .join(" AND ")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clauses_placeholders_and_conditions() {
        let mut update = Update::default();
        update
            .set("a", AttributeValue::Bool(true))
            .set_expr("b", "if_not_exists(#b, :zero)")
            .remove("c")
            .add("d", ":zero")
            .value(":zero", AttributeValue::N("0".into()));
        let a = update.name("a");
        update
            .condition(format!("attribute_exists({a})"))
            .condition("#b < :zero");
        assert_eq!(
            update.expression(),
            "SET #a = :a, #b = if_not_exists(#b, :zero) REMOVE #c ADD #d :zero"
        );
        assert_eq!(
            update.condition_expression().as_deref(),
            Some("(attribute_exists(#a)) AND (#b < :zero)")
        );
        assert_eq!(update.names.len(), 4);
        assert_eq!(update.values.len(), 2);
        assert_eq!(Update::default().condition_expression(), None);
    }
}
