//! E-mail as the emulator's SES saw it, read back through moto's model API.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct SentMail {
    pub source: String,
    pub subject: String,
    /// The HTML body: the emulator keeps the HTML part of a simple message.
    pub body: String,
    pub destinations: Destinations,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Destinations {
    #[serde(rename = "ToAddresses", default)]
    pub to: Vec<String>,
}

/// Every e-mail the emulator accepted that was addressed to `to`.
pub async fn sent_to(to: &str) -> Vec<SentMail> {
    let data = emulator_state().await;
    let messages = data["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    messages
        .into_iter()
        .map(|m| serde_json::from_value::<SentMail>(m).unwrap())
        .filter(|m| m.destinations.to.iter().any(|d| d == to))
        .collect()
}

/// The emulator's whole state, from its model API. Dumping it while other
/// tests write can fail inside the emulator (a collection changed while it
/// was read); such an answer is not JSON, and the dump is asked again.
async fn emulator_state() -> serde_json::Value {
    let url = format!("{}/moto-api/data.json", crate::emulator().endpoint());
    let mut last = String::new();
    for _ in 0..10 {
        let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
        match serde_json::from_str(&text) {
            Ok(data) => return data,
            Err(_) => last = text,
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the emulator's state dump never succeeded: {last:.300}")
}

/// A sender address of its own, verified in the emulator's SES.
pub async fn verified_sender() -> String {
    let from = format!("webhooks-{}@example.com", uuid::Uuid::new_v4());
    verify(&from).await;
    from
}

pub async fn verify(address: &str) {
    aws_sdk_sesv2::Client::new(&crate::sdk_config().await)
        .create_email_identity()
        .email_identity(address)
        .send()
        .await
        .unwrap();
}

/// A recipient address no other test uses.
pub fn unique_address(name: &str) -> String {
    format!("{name}-{}@example.com", uuid::Uuid::new_v4())
}
