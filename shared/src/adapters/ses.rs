//! E-mail through SES (API v2), text and HTML bodies in UTF-8.

use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

use crate::domain::Mail;
use crate::ports::{MailError, Mailer};

#[derive(Debug, Clone)]
pub struct SesMailer {
    client: Client,
}

impl SesMailer {
    pub fn from_sdk(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(sdk))
    }

    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

fn utf8(data: &str) -> Result<Content, MailError> {
    Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| MailError::Unavailable(Box::new(e)))
}

/// Error codes with which SES refuses a message for good: SES answers
/// `BadRequestException` for input it cannot send (a recipient address it
/// cannot deliver to among them); the emulator answers
/// `InvalidParameterValue`. Anything else may pass later: an unverified
/// sender is `MessageRejected`, fixed by verifying it.
const REJECTED_FOR_GOOD: [&str; 2] = ["BadRequestException", "InvalidParameterValue"];

impl Mailer for SesMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let message = Message::builder()
            .subject(utf8(&mail.subject)?)
            .body(
                Body::builder()
                    .text(utf8(&mail.text)?)
                    .html(utf8(&mail.html)?)
                    .build(),
            )
            .build();
        self.client
            .send_email()
            .from_email_address(&mail.from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(mail.to.clone()))
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| {
                let code = e.as_service_error().and_then(|s| s.meta().code());
                if code.is_some_and(|c| REJECTED_FOR_GOOD.contains(&c)) {
                    MailError::Rejected(Box::new(e))
                } else {
                    MailError::Unavailable(Box::new(e))
                }
            })?;
        Ok(())
    }
}
