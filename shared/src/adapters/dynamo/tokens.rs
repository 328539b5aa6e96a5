//! [`TokenStore`]: project tokens, stored as hashes under an id derived from
//! the hash, so finding a token is one GetItem.

use super::schema::{TOKEN_SK, TokenItem, attr, s, token_key, token_pk};
use super::{DynamoStore, corrupt, is_condition_failure, unavailable};
use crate::domain::{ProjectCode, TokenHash, TokenId, TokenRecord};
use crate::ports::{StoreError, TokenStore};

impl TokenStore for DynamoStore {
    async fn put_token(&self, record: &TokenRecord) -> Result<(), StoreError> {
        let item = serde_dynamo::to_item(TokenItem {
            pk: token_pk(&record.id),
            sk: TOKEN_SK.to_owned(),
            record: record.clone(),
        })
        .map_err(corrupt)?;
        if self.put_new(item).await? {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists)
        }
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(token_key(&hash.id())))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let record = serde_dynamo::from_item::<_, TokenItem>(item)
            .map_err(corrupt)?
            .record;
        Ok(record.matches(hash).then_some(record))
    }

    async fn revoke_token(&self, project: &ProjectCode, id: &TokenId) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(token_key(id)))
            .condition_expression("#project = :project")
            .expression_attribute_names("#project", attr::PROJECT)
            .expression_attribute_values(":project", s(project.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::NotFound),
            Err(e) => Err(unavailable(e)),
        }
    }
}
