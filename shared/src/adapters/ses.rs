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
        .map_err(|e| MailError(Box::new(e)))
}

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
            .map_err(|e| MailError(Box::new(e)))?;
        Ok(())
    }
}
