//! The decoded, validated form of an auth event.
//!
//! Values of these types only come out of the decoder, so code downstream can
//! rely on every bound of the contract having been checked.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every accepted wire value, in schema order.
            pub const ALL: &'static [&'static str] = &[$($s),+];

            /// The wire form.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            /// Parses the wire form; `None` for anything else.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// What happened. One event per step of a ceremony.
    EventType {
        CapabilityProbed => "capability.probed",
        EnrollmentOffered => "enrollment.offered",
        EnrollmentSkipped => "enrollment.skipped",
        EnrollmentStarted => "enrollment.started",
        EnrollmentSucceeded => "enrollment.succeeded",
        EnrollmentFailed => "enrollment.failed",
        AuthStarted => "auth.started",
        AuthSucceeded => "auth.succeeded",
        AuthFailed => "auth.failed",
        AuthFallback => "auth.fallback",
        RecoveryStarted => "recovery.started",
        RecoveryCompleted => "recovery.completed",
        RecoveryFailed => "recovery.failed",
        CredentialRevoked => "credential.revoked",
        CredentialBackupStateChanged => "credential.backup_state_changed",
        SupportContacted => "support.contacted",
    }
);

string_enum!(FormFactor { Desktop => "desktop", Mobile => "mobile", Tablet => "tablet", Other => "other" });
string_enum!(AppType { Web => "web", Native => "native", Webview => "webview" });
string_enum!(Variant { Treatment => "treatment", Control => "control" });
string_enum!(Mediation { Conditional => "conditional", Modal => "modal", Immediate => "immediate" });
string_enum!(
    Method {
        Passkey => "passkey",
        Password => "password",
        PasswordOtp => "password_otp",
        MagicLink => "magic_link",
        RecoveryCode => "recovery_code",
        Federated => "federated",
        Other => "other",
    }
);
string_enum!(
    FallbackReason {
        NoCredential => "no_credential",
        CredentialUnavailable => "credential_unavailable",
        UserChoice => "user_choice",
        Error => "error",
        Unsupported => "unsupported",
    }
);
string_enum!(
    RecoveryChannel {
        Email => "email",
        Sms => "sms",
        RecoveryCode => "recovery_code",
        SecondAuthenticator => "second_authenticator",
        Helpdesk => "helpdesk",
        IdentityVerification => "identity_verification",
    }
);
string_enum!(Attachment { Platform => "platform", CrossPlatform => "cross-platform" });
string_enum!(
    Transport {
        Usb => "usb",
        Nfc => "nfc",
        Ble => "ble",
        Internal => "internal",
        Hybrid => "hybrid",
        SmartCard => "smart-card",
    }
);
string_enum!(
    AttestationFormat {
        None => "none",
        Packed => "packed",
        Tpm => "tpm",
        AndroidKey => "android-key",
        AndroidSafetynet => "android-safetynet",
        Apple => "apple",
        FidoU2f => "fido-u2f",
    }
);

/// The client the ceremony ran in. Every field is optional: RPs report what they know.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Client {
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    pub form_factor: Option<FormFactor>,
    pub app_type: Option<AppType>,
}

/// The rollout exposure the RP applied, as the RP saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutTag {
    pub rollout_id: String,
    pub variant: Variant,
    pub percent: Option<f64>,
}

/// A WebAuthn credential as seen at registration or assertion.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    /// Lower-case hyphenated UUID. All zeros is normal with `none` attestation.
    pub aaguid: Option<String>,
    pub authenticator_attachment: Option<Attachment>,
    /// As reported; iOS native reports none. Stored, never interpreted.
    pub transports: Vec<Transport>,
    /// BE flag: fixed at creation. `true` = synced (multi-device) passkey.
    pub backup_eligible: bool,
    /// BS flag: may change. Never `true` when `backup_eligible` is `false`.
    pub backup_state: bool,
    pub user_verified: Option<bool>,
    pub discoverable: Option<bool>,
    pub attestation_format: Option<AttestationFormat>,
}

/// A client DOMException name or a server-side verification reason.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorInfo {
    pub name: String,
    pub message: Option<String>,
}

/// Per-type fields, carried under `data` on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    CapabilityProbed {
        webauthn_available: bool,
        platform_authenticator_available: Option<bool>,
        conditional_mediation_available: Option<bool>,
    },
    /// `enrollment.offered`, `enrollment.skipped`, `enrollment.started`.
    Enrollment {
        entry_point: String,
        nudge_index: Option<u32>,
    },
    EnrollmentSucceeded {
        credential: Credential,
    },
    EnrollmentFailed {
        error: ErrorInfo,
    },
    AuthStarted {
        method: Method,
        mediation: Option<Mediation>,
        /// A cross-device (hybrid) ceremony, when the client knows it at the
        /// start (optional and additive: events without it stay valid).
        cross_device: Option<bool>,
    },
    AuthSucceeded {
        method: Method,
        credential: Option<Credential>,
        cross_device: Option<bool>,
        duration_ms: Option<u64>,
    },
    AuthFailed {
        method: Method,
        error: ErrorInfo,
        /// As on `auth.started`.
        cross_device: Option<bool>,
    },
    AuthFallback {
        from_method: Method,
        to_method: Method,
        reason: FallbackReason,
    },
    /// `recovery.started`, `recovery.completed`, `recovery.failed`.
    Recovery {
        channel: RecoveryChannel,
    },
    CredentialRevoked {
        reason: String,
    },
    BackupStateChanged {
        from: bool,
        to: bool,
    },
    SupportContacted {
        topic: String,
    },
}

/// A validated auth event. Identifiers are still raw here; pseudonymization
/// happens in ingest before anything is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthEvent {
    pub schema_version: u8,
    pub event_id: String,
    pub event_type: EventType,
    pub occurred_at: DateTime<Utc>,
    pub rp_id: String,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub session_id: Option<String>,
    pub attempt_id: Option<String>,
    pub client: Client,
    pub rollout: Option<RolloutTag>,
    pub payload: Payload,
    /// Fields the contract does not know, keyed by their JSON pointer, kept so
    /// that nothing a producer sent is silently lost.
    pub extra: Map<String, Value>,
}
