//! E-mail through SES (API v2), text and HTML bodies in UTF-8.

use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
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

/// What went wrong with an SES call, without SES's message: SES names
/// e-mail addresses in its messages (an unverified identity, a recipient
/// refused in the sandbox), and addresses must not reach the logs. The error
/// code says what the operator needs to know.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SesFailure(String);

impl SesFailure {
    fn of<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Self {
        Self(match err {
            SdkError::ServiceError(e) => format!(
                "SES answered {}",
                e.err().code().unwrap_or("an error without a code")
            ),
            SdkError::TimeoutError(_) => "SES did not answer in time".to_owned(),
            SdkError::DispatchFailure(_) => "SES could not be reached".to_owned(),
            SdkError::ResponseError(_) => "SES's answer could not be read".to_owned(),
            _ => "the SES request could not be made".to_owned(),
        })
    }
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
            .map_err(|e| {
                let code = e.as_service_error().and_then(|s| s.meta().code());
                let failure = Box::new(SesFailure::of(&e));
                if code.is_some_and(|c| REJECTED_FOR_GOOD.contains(&c)) {
                    MailError::Rejected(failure)
                } else {
                    MailError::Unavailable(failure)
                }
            })?;
        Ok(())
    }
}
