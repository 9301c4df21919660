//! What `mirtool login` tells the operator, in English or Simplified Chinese:
//! every refusal code the LoginSrv answers with (PROTOCOL.md §5 and the
//! loginsrv README's reply table), and why the gate ended the connection
//! when it says so only by closing it.

/// The language of refusals (`--lang`; default from the locale).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// English.
    En,
    /// Simplified Chinese.
    Zh,
}

impl Lang {
    /// The locale's language, read as POSIX does for messages: `LC_ALL`,
    /// then `LC_MESSAGES`, then `LANG`, the first one set and non-empty.
    /// `zh…` (zh_CN.UTF-8, zh_TW, zh) is Chinese; anything else English.
    pub fn from_locale(var: impl Fn(&str) -> Option<String>) -> Lang {
        let locale = ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .filter_map(|name| var(name))
            .find(|v| !v.is_empty())
            .unwrap_or_default();
        if locale.to_ascii_lowercase().starts_with("zh") {
            Lang::Zh
        } else {
            Lang::En
        }
    }

    /// Picks the text of this language.
    fn pick(self, en: impl Into<String>, zh: impl Into<String>) -> String {
        match self {
            Lang::En => en.into(),
            Lang::Zh => zh.into(),
        }
    }

    /// The line a refusal is printed as.
    pub fn refused(self, why: &str) -> String {
        self.pick(format!("refused: {why}"), format!("被拒绝：{why}"))
    }

    /// SM_CERTIFICATION_FAIL.
    pub fn version_too_old(self, version: i32) -> String {
        self.pick(
            format!("client version {version} is too old"),
            format!("客户端版本 {version} 过旧，登录服务器不接受"),
        )
    }

    /// SM_PASSWD_FAIL by its recog.
    pub fn login(self, code: i32) -> String {
        match code {
            0 => self.pick("no such account", "账号不存在"),
            -1 => self.pick("wrong password", "密码错误"),
            -2 => self.pick(
                "account locked after repeated failures; try again later",
                "密码错误次数过多，账号已被临时锁定，请稍后再试",
            ),
            -3 => self.pick(
                "account already logged in; the old session was kicked, try again",
                "账号已在线，旧连接已被踢下线，请重新登录",
            ),
            -4 => self.pick(
                "login request not understood by the server",
                "登录服务器无法识别这条登录请求",
            ),
            -5 => self.pick(
                "server error or busy; try again later",
                "登录服务器出错或繁忙，请稍后再试",
            ),
            c => self.pick(
                format!("login refused (code {c})"),
                format!("登录被拒绝（代码 {c}）"),
            ),
        }
    }

    /// SM_NEWID_FAIL by its recog.
    pub fn register(self, code: i32) -> String {
        match code {
            0 => self.pick("account name already taken", "账号名已被占用"),
            -1 => self.pick(
                "account name or password not accepted",
                "账号名或密码不符合要求",
            ),
            -5 => self.pick(
                "new account refused: server error or busy; try again later",
                "注册失败：登录服务器出错或繁忙，请稍后再试",
            ),
            c => self.pick(
                format!("new account refused (code {c})"),
                format!("注册被拒绝（代码 {c}）"),
            ),
        }
    }

    /// SM_CHGPASSWD_FAIL by its recog.
    pub fn change_password(self, code: i32) -> String {
        match code {
            0 => self.pick(
                "password not changed: no such account or new password not accepted",
                "密码未修改：账号不存在，或新密码不符合要求",
            ),
            -1 => self.pick(
                "password not changed: wrong current password",
                "密码未修改：原密码错误",
            ),
            -2 => self.pick(
                "password not changed: account locked",
                "密码未修改：账号已被锁定",
            ),
            -5 => self.pick(
                "password not changed: server error or busy; try again later",
                "密码未修改：登录服务器出错或繁忙，请稍后再试",
            ),
            -6 => self.pick(
                "password not changed: another request changed it at the same moment; try again",
                "密码未修改：同一时刻另一个请求已修改了密码，请重试",
            ),
            c => self.pick(
                format!("password change refused (code {c})"),
                format!("修改密码被拒绝（代码 {c}）"),
            ),
        }
    }

    /// SM_STARTFAIL.
    pub fn start_fail(self, server: &str) -> String {
        self.pick(
            format!("server {server:?} is full or unknown (SM_STARTFAIL)"),
            format!("服务器 “{server}” 已满员或不存在（SM_STARTFAIL）"),
        )
    }

    /// SM_PASSOK_SELECTSERVER with no entry.
    pub fn empty_list(self) -> String {
        self.pick("the server list is empty", "服务器列表为空")
    }

    /// SM_OUTOFCONNECTION.
    pub fn out_of_connection(self) -> String {
        self.pick(
            "the gate is closing the connection (SM_OUTOFCONNECTION)",
            "网关正在关闭连接（SM_OUTOFCONNECTION）",
        )
    }

    /// The gate closed or reset the connection. It sends no reason, but
    /// when it does so matters: before any reply it refused the connection
    /// itself (admission or its LoginSrv link); after one, the LoginSrv
    /// kicked the client or the gate closed it for its traffic.
    pub fn closed(self, answered: bool, detail: &str) -> String {
        match (answered, self) {
            (false, Lang::En) => format!(
                "the gate closed the connection before any reply ({detail}): it refused this \
                 client. The address is blocked, over the per-IP connection cap or connect \
                 rate, the gate is full, or its link to the LoginSrv is down or busy; the \
                 gate's `connection rejected` / `refusing client` log line names which \
                 (reason=blocked, rate_limited, per_ip_limit, max_connections, \
                 server_unavailable, server_busy)"
            ),
            (false, Lang::Zh) => format!(
                "网关未作任何应答就关闭了连接（{detail}）：网关拒绝了这个客户端。可能是本 IP \
                 已被封禁、超过单 IP 连接数或连接频率限制、网关连接数已满，或网关到 LoginSrv \
                 的链路断开或繁忙；网关日志中 `connection rejected` / `refusing client` 一行的 \
                 reason= 写明是哪一种（blocked 封禁、rate_limited 连接过快、per_ip_limit \
                 单 IP 超限、max_connections 连接数已满、server_unavailable 链路断开、\
                 server_busy 链路繁忙）"
            ),
            (true, Lang::En) => format!(
                "the gate closed the connection after a reply ({detail}): the LoginSrv kicked \
                 this client, or the gate closed it for its traffic (too many messages, an \
                 oversize message, idle); the gate's close reason (reason=kicked, flooding, \
                 oversize, idle_timeout, …) says which"
            ),
            (true, Lang::Zh) => format!(
                "网关在应答之后关闭了连接（{detail}）：LoginSrv 踢下了这个客户端，或网关因其流量\
                 （发包过快、包过长、空闲超时）断开了它；网关日志的关闭原因（reason=kicked、\
                 flooding、oversize、idle_timeout 等）写明是哪一种"
            ),
        }
    }

    /// A server list entry's status (the Delphi LoginSrv's numbers).
    pub fn status(self, status: &str) -> String {
        match status {
            "0" => self.pick("offline", "未开放"),
            "1" => "idle 空闲".into(),
            "2" => "good 良好".into(),
            "3" => "busy 繁忙".into(),
            "4" => "full 满员".into(),
            other => self.pick(format!("status {other}"), format!("状态 {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_locale_picks_the_language_as_posix_orders_it() {
        assert_eq!(Lang::from_locale(env(&[])), Lang::En);
        assert_eq!(Lang::from_locale(env(&[("LANG", "zh_CN.UTF-8")])), Lang::Zh);
        assert_eq!(Lang::from_locale(env(&[("LANG", "C.UTF-8")])), Lang::En);
        // LC_ALL wins over LC_MESSAGES, which wins over LANG; empty ones are skipped.
        let both = [("LC_ALL", "en_US.UTF-8"), ("LANG", "zh_CN.UTF-8")];
        assert_eq!(Lang::from_locale(env(&both)), Lang::En);
        let messages = [("LC_MESSAGES", "zh_TW.UTF-8"), ("LANG", "en_GB")];
        assert_eq!(Lang::from_locale(env(&messages)), Lang::Zh);
        let empty = [("LC_ALL", ""), ("LANG", "zh_CN.GBK")];
        assert_eq!(Lang::from_locale(env(&empty)), Lang::Zh);
    }

    #[test]
    fn every_reply_code_has_its_own_words_in_both_languages() {
        for lang in [Lang::En, Lang::Zh] {
            type Words = fn(Lang, i32) -> String;
            let sets: [(&str, Vec<i32>, Words); 3] = [
                ("login", vec![0, -1, -2, -3, -4, -5], Lang::login),
                ("register", vec![0, -1, -5], Lang::register),
                ("change", vec![0, -1, -2, -5, -6], Lang::change_password),
            ];
            for (what, codes, words) in sets {
                let unknown = words(lang, -99);
                assert!(unknown.contains("-99"), "{what}: {unknown}");
                let mut seen = Vec::new();
                for code in codes {
                    let text = words(lang, code);
                    assert!(
                        !text.contains("代码") && !text.contains("code "),
                        "{what} {code}"
                    );
                    assert!(!seen.contains(&text), "{what} {code}: {text} twice");
                    seen.push(text);
                }
            }
        }
        assert_eq!(Lang::Zh.login(-1), "密码错误");
        assert_eq!(Lang::En.register(0), "account name already taken");
        assert_eq!(Lang::Zh.refused("账号不存在"), "被拒绝：账号不存在");
    }

    #[test]
    fn a_close_before_any_reply_is_a_refusal_by_the_gate() {
        let before = Lang::En.closed(false, "EOF");
        assert!(
            before.contains("refused") && before.contains("blocked"),
            "{before}"
        );
        assert!(before.contains("server_unavailable"), "{before}");
        let after = Lang::Zh.closed(true, "EOF");
        assert!(after.contains("踢"), "{after}");
        assert!(Lang::Zh.closed(false, "EOF").contains("封禁"));
    }
}
