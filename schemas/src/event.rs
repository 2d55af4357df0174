//! The decoded, validated form of an auth event.
//!
//! Values of these types only come out of the decoder, so code downstream can
//! rely on every bound of the contract having been checked.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

macro_rules! string_enum {
    (
        $(#[$m:meta])*
        $name:ident { $($(#[$vm:meta])* $variant:ident => $s:literal),+ $(,)? }
    ) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $variant),+ }

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
        /// The client's WebAuthn support was checked.
        CapabilityProbed => "capability.probed",
        /// The user was offered to create a passkey.
        EnrollmentOffered => "enrollment.offered",
        /// The user declined or dismissed the offer.
        EnrollmentSkipped => "enrollment.skipped",
        /// The user began creating a passkey.
        EnrollmentStarted => "enrollment.started",
        /// A passkey was created and registered with the RP.
        EnrollmentSucceeded => "enrollment.succeeded",
        /// Creating a passkey failed.
        EnrollmentFailed => "enrollment.failed",
        /// A sign-in ceremony began, with any method.
        AuthStarted => "auth.started",
        /// A sign-in succeeded.
        AuthSucceeded => "auth.succeeded",
        /// A sign-in attempt failed.
        AuthFailed => "auth.failed",
        /// A sign-in left one method for another.
        AuthFallback => "auth.fallback",
        /// An account recovery began.
        RecoveryStarted => "recovery.started",
        /// An account recovery gave the user access again.
        RecoveryCompleted => "recovery.completed",
        /// An account recovery failed.
        RecoveryFailed => "recovery.failed",
        /// A credential was revoked (removed from the account).
        CredentialRevoked => "credential.revoked",
        /// A credential's backup state (BS flag) changed.
        CredentialBackupStateChanged => "credential.backup_state_changed",
        /// The user contacted support.
        SupportContacted => "support.contacted",
        /// The relying party told the user's passkey provider about the
        /// state of credentials (the WebAuthn Signal API). Schema v2.
        CredentialSignaled => "credential.signaled",
    }
);

impl EventType {
    /// The first schema version with this event type.
    pub fn since(self) -> u8 {
        match self {
            EventType::CredentialSignaled => 2,
            _ => 1,
        }
    }
}

string_enum!(
    /// Which WebAuthn Signal API call the relying party made.
    Signal {
        /// `signalUnknownCredential`: a credential the RP no longer knows.
        UnknownCredential => "unknown_credential",
        /// `signalAllAcceptedCredentials`: the user's current credential list.
        AllAcceptedCredentials => "all_accepted_credentials",
        /// `signalCurrentUserDetails`: the user's current name and display name.
        CurrentUserDetails => "current_user_details",
    }
);

string_enum!(
    /// A WebAuthn hint (`PublicKeyCredentialHint`): which authenticator UI the
    /// RP asked the client to favour.
    Hint {
        /// A roaming security key.
        SecurityKey => "security-key",
        /// The device's own platform authenticator.
        ClientDevice => "client-device",
        /// A phone, over the cross-device (hybrid) flow.
        Hybrid => "hybrid",
    }
);

string_enum!(
    /// The kind of device the client runs on.
    FormFactor {
        /// A desktop or laptop computer.
        Desktop => "desktop",
        /// A phone.
        Mobile => "mobile",
        /// A tablet.
        Tablet => "tablet",
        /// Any other kind of device.
        Other => "other",
    }
);
string_enum!(
    /// What kind of app the ceremony ran in.
    AppType {
        /// A web page in a browser.
        Web => "web",
        /// A native app.
        Native => "native",
        /// A web page embedded in a native app.
        Webview => "webview",
    }
);
string_enum!(
    /// The arm of a rollout a user was served.
    Variant {
        /// Exposed to the change being rolled out.
        Treatment => "treatment",
        /// Kept on the current behaviour, for comparison.
        Control => "control",
    }
);
string_enum!(
    /// How a passkey request was presented to the user.
    Mediation {
        /// In the browser's autofill (conditional UI), without a dialog.
        Conditional => "conditional",
        /// In a modal dialog.
        Modal => "modal",
        /// Immediate mediation: credentials shown at once if there are any,
        /// otherwise an immediate failure without UI.
        Immediate => "immediate",
    }
);
string_enum!(
    /// A sign-in method.
    Method {
        /// A WebAuthn passkey.
        Passkey => "passkey",
        /// A password alone.
        Password => "password",
        /// A password plus a one-time code.
        PasswordOtp => "password_otp",
        /// A one-time sign-in link.
        MagicLink => "magic_link",
        /// A recovery code.
        RecoveryCode => "recovery_code",
        /// An external identity provider.
        Federated => "federated",
        /// Any other method.
        Other => "other",
    }
);
string_enum!(
    /// Why a sign-in left one method for another.
    FallbackReason {
        /// The user has no credential for the first method.
        NoCredential => "no_credential",
        /// A credential exists but could not be used here.
        CredentialUnavailable => "credential_unavailable",
        /// The user chose the other method.
        UserChoice => "user_choice",
        /// The first method failed with an error.
        Error => "error",
        /// The client does not support the first method.
        Unsupported => "unsupported",
    }
);
string_enum!(
    /// How a user proves who they are to regain access to an account.
    RecoveryChannel {
        /// A link or code sent by email.
        Email => "email",
        /// A code sent by SMS.
        Sms => "sms",
        /// A recovery code.
        RecoveryCode => "recovery_code",
        /// Another authenticator registered to the account.
        SecondAuthenticator => "second_authenticator",
        /// A support agent.
        Helpdesk => "helpdesk",
        /// An identity check, such as an ID document.
        IdentityVerification => "identity_verification",
    }
);
string_enum!(
    /// How the authenticator is attached to the client (WebAuthn
    /// `authenticatorAttachment`).
    Attachment {
        /// Built into the client device.
        Platform => "platform",
        /// A roaming authenticator: a security key, or a phone used cross-device.
        CrossPlatform => "cross-platform",
    }
);
string_enum!(
    /// How the client can reach an authenticator (WebAuthn
    /// `AuthenticatorTransport`).
    Transport {
        /// USB.
        Usb => "usb",
        /// NFC.
        Nfc => "nfc",
        /// Bluetooth Low Energy.
        Ble => "ble",
        /// Built into the client device.
        Internal => "internal",
        /// Hybrid: a phone used cross-device.
        Hybrid => "hybrid",
        /// A smart card.
        SmartCard => "smart-card",
    }
);
string_enum!(
    /// The WebAuthn attestation statement format a credential was registered with.
    AttestationFormat {
        /// No attestation; normal for synced passkeys.
        None => "none",
        /// `packed`.
        Packed => "packed",
        /// `tpm`: a TPM.
        Tpm => "tpm",
        /// `android-key`: the Android keystore.
        AndroidKey => "android-key",
        /// `android-safetynet`: Android SafetyNet.
        AndroidSafetynet => "android-safetynet",
        /// `apple`: Apple anonymous attestation.
        Apple => "apple",
        /// `fido-u2f`: a FIDO U2F security key.
        FidoU2f => "fido-u2f",
    }
);

/// The client the ceremony ran in. Every field is optional: RPs report what they know.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Client {
    /// Operating system name, as reported (1–64 characters).
    pub os: Option<String>,
    /// Operating system version, as reported.
    pub os_version: Option<String>,
    /// Browser name, as reported (1–64 characters).
    pub browser: Option<String>,
    /// Browser version, as reported.
    pub browser_version: Option<String>,
    /// The kind of device.
    pub form_factor: Option<FormFactor>,
    /// Web page, native app or webview.
    pub app_type: Option<AppType>,
}

/// The rollout exposure the RP applied, as the RP saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutTag {
    /// The RP's id for the rollout (1–128 characters).
    pub rollout_id: String,
    /// The arm the user was served.
    pub variant: Variant,
    /// The share of users exposed, in percent (0–100), when the RP sent it.
    pub percent: Option<f64>,
}

/// A WebAuthn credential as seen at registration or assertion.
#[derive(Debug, Clone, PartialEq)]
pub struct Credential {
    /// Lower-case hyphenated UUID. All zeros is normal with `none` attestation.
    pub aaguid: Option<String>,
    /// Platform or roaming authenticator, when reported.
    pub authenticator_attachment: Option<Attachment>,
    /// As reported; iOS native reports none. Stored, never interpreted.
    pub transports: Vec<Transport>,
    /// BE flag: fixed at creation. `true` = synced (multi-device) passkey.
    pub backup_eligible: bool,
    /// BS flag: may change. Never `true` when `backup_eligible` is `false`.
    pub backup_state: bool,
    /// UV flag: the authenticator verified the user (PIN, biometrics), when reported.
    pub user_verified: Option<bool>,
    /// Whether the credential is discoverable (a resident key), when reported.
    pub discoverable: Option<bool>,
    /// The attestation format of the registration, when reported.
    pub attestation_format: Option<AttestationFormat>,
}

/// A client DOMException name or a server-side verification reason.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorInfo {
    /// The DOMException name (`NotAllowedError`, …) or the server's reason
    /// (1–64 characters).
    pub name: String,
    /// Free-text detail, when given (at most 512 characters).
    pub message: Option<String>,
}

/// Per-type fields, carried under `data` on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// `capability.probed`: what the client supports.
    CapabilityProbed {
        /// The client offers WebAuthn at all.
        webauthn_available: bool,
        /// A user-verifying platform authenticator is available, when probed.
        platform_authenticator_available: Option<bool>,
        /// Conditional mediation (passkey autofill) is available, when probed.
        conditional_mediation_available: Option<bool>,
    },
    /// `enrollment.offered`, `enrollment.skipped`, `enrollment.started`.
    Enrollment {
        /// Where in the RP's app the offer was made (1–64 characters).
        entry_point: String,
        /// Which offer to this user this is, as the RP counts them (0–10,000),
        /// when sent.
        nudge_index: Option<u32>,
    },
    /// `enrollment.succeeded`.
    EnrollmentSucceeded {
        /// The credential just created.
        credential: Credential,
    },
    /// `enrollment.failed`.
    EnrollmentFailed {
        /// Why the passkey could not be created.
        error: ErrorInfo,
    },
    /// `auth.started`.
    AuthStarted {
        /// The method the sign-in started with.
        method: Method,
        /// How a passkey request was presented, when reported.
        mediation: Option<Mediation>,
        /// A cross-device (hybrid) ceremony, when the client knows it at the
        /// start (optional and additive: events without it stay valid).
        cross_device: Option<bool>,
        /// The WebAuthn hints the RP passed, unique, in its order; empty when
        /// none were sent (always empty in schema v1).
        hints: Vec<Hint>,
    },
    /// `auth.succeeded`.
    AuthSucceeded {
        /// The method that succeeded.
        method: Method,
        /// The credential used, when reported.
        credential: Option<Credential>,
        /// As on `auth.started`.
        cross_device: Option<bool>,
        /// Milliseconds from the start of the ceremony to success (at most
        /// 24 h), when measured.
        duration_ms: Option<u64>,
    },
    /// `auth.failed`.
    AuthFailed {
        /// The method that failed.
        method: Method,
        /// What went wrong.
        error: ErrorInfo,
        /// As on `auth.started`.
        cross_device: Option<bool>,
    },
    /// `auth.fallback`.
    AuthFallback {
        /// The method the user left.
        from_method: Method,
        /// The method the user moved to.
        to_method: Method,
        /// Why the user moved.
        reason: FallbackReason,
    },
    /// `recovery.started`, `recovery.completed`, `recovery.failed`.
    Recovery {
        /// How the user proves who they are.
        channel: RecoveryChannel,
    },
    /// `credential.revoked`.
    CredentialRevoked {
        /// Why, in the RP's words (1–64 characters).
        reason: String,
    },
    /// `credential.backup_state_changed`.
    BackupStateChanged {
        /// The BS flag before the change.
        from: bool,
        /// The BS flag after the change.
        to: bool,
    },
    /// `support.contacted`.
    SupportContacted {
        /// What the contact was about, in the RP's words (1–64 characters).
        topic: String,
    },
    /// `credential.signaled` (schema v2).
    CredentialSignaled {
        /// The Signal API call made.
        signal: Signal,
    },
}

/// A validated auth event. Identifiers are still raw here; pseudonymization
/// happens in ingest before anything is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthEvent {
    /// The version the event was written in, one of
    /// [`SCHEMA_VERSIONS`](crate::SCHEMA_VERSIONS).
    pub schema_version: u8,
    /// The producer's id, unique per `rp_id`; a retry reuses it (1–64 characters).
    pub event_id: String,
    /// What happened; decides the variant of `payload`.
    pub event_type: EventType,
    /// When it happened, by the producer's clock, truncated to microseconds.
    pub occurred_at: DateTime<Utc>,
    /// The WebAuthn relying party id (a domain).
    pub rp_id: String,
    /// The RP's opaque key for the user. `None` only on `capability.probed`
    /// and on an `auth.started` before the user is identified.
    pub user_id: Option<String>,
    /// The RP's key for the device, when sent.
    pub device_id: Option<String>,
    /// The RP's key for the session, when sent.
    pub session_id: Option<String>,
    /// Joins the events of one ceremony, when sent.
    pub attempt_id: Option<String>,
    /// What the RP reported about the client.
    pub client: Client,
    /// The rollout exposure the RP applied, when there was one.
    pub rollout: Option<RolloutTag>,
    /// The fields of `event_type`, from `data`.
    pub payload: Payload,
    /// Fields the contract does not know, keyed by their JSON pointer, kept so
    /// that nothing a producer sent is silently lost.
    pub extra: Map<String, Value>,
}
