"""
The IVR's prompt packs: what the IVR says, as data, and the 8 kHz WAV files
made from it at install time.

L{PHRASES} holds the fixed phrases of phone trading, the voice information
service and the expert mailboxes, in Mandarin (C{zh/...}, the default) and
English (C{en/...}); L{callcenter.ivr.say.VOCABULARY} adds the words that
numbers, money and dates are built from.  L{build_pack} makes one WAV per
prompt under C{DIR/<lang>/<slug>.wav} (8 kHz mono 16-bit PCM, which
L{callcenter.media.wavfile.load_prompt} turns into PCMU or PCMA frames) and
lists them in C{DIR/manifest.json}; L{resolve} gives a prompt's file.

Synthesis is espeak-ng's, then ours: espeak-ng writes 22,050 Hz only (it has
no option for the rate, and MBROLA voices, the only others, are 16 kHz), so
we resample to 8 kHz with a Kaiser-windowed sinc low-pass (flat to 3.4 kHz,
60 dB down from 4.4 kHz, so what folds back lands above the telephone band),
trim the silence at both ends to 50 ms, and bring the speech to -20 dBFS
RMS with peaks no higher than -3 dBFS, so that prompts played one after the
other sound as one voice at one level.  Pure Python, no numpy: the whole
pack is made once, in seconds.

The pack is a cache: a prompt whose text, voice, engine version and
processing are those the manifest records, and whose file is unchanged, is
not synthesised again.

Studio recordings replace prompts file by file through the studio
directory, C{DIR/studio/<lang>/<slug>.wav}: a build validates the
recording (8 kHz mono, 16-bit PCM, mu-law or A-law), copies it over the
synthesised file and marks it C{"studio"} in the manifest; it never writes
in C{studio/}.  Deleting the recording brings the synthesised prompt back at
the next build.  The C{<lang>/} folders are the build's own: a file there
edited by hand is not overwritten but reported, since the edit would be
lost (move it to C{studio/}, or build with C{force}).
"""

import concurrent.futures
import hashlib
import importlib
import io
import json
import math
import operator
import os
import re
import subprocess
import sys
import wave
from array import array
from types import MappingProxyType

import attrs

from callcenter.media.wavfile import PromptError, load_prompt

__all__ = [
    "LANGUAGES",
    "PHRASES",
    "BuildReport",
    "Espeak",
    "PromptNotFound",
    "PromptPackError",
    "SynthesisError",
    "build_pack",
    "catalogue",
    "espeak",
    "resolve",
]

LANGUAGES = ("zh", "en")
SAMPLE_RATE = 8000
MANIFEST = "manifest.json"
STUDIO = "studio"
STUDIO_SOURCE = "studio"
# What a manifest entry's "processing" says: change it when the resampler,
# trimming or level change, and every synthesised prompt is made anew.
PROCESSING = 1

# Said as a broker's line says it.  Names are C{lang/slug}, slugs in the
# style of say.py's VOCABULARY (lower case, digits, hyphens).  Keys are
# written out in words in Mandarin (井号键, 星号键) since the synthesiser
# would otherwise read the symbols; digits after 按 are read as 一, 二 ....
# The IVR offers the other language by playing both languages' "language-
# offer" one after the other.
PHRASES = MappingProxyType({
    # Greeting, main menu and general.
    "zh/welcome": "您好，欢迎致电证券电话委托系统。",
    "en/welcome": "Welcome to the securities phone trading service.",
    "zh/language-offer": "普通话服务请按1。",
    "en/language-offer": "For service in English, press 2.",
    "zh/main-menu": "电话委托请按1，行情及资讯服务请按2，专家信箱请按3，人工服务请按0。",
    "en/main-menu": (
        "For phone trading, press 1. For market information and bulletins, press 2. "
        "For expert mailboxes, press 3. To speak to an agent, press 0."
    ),
    "zh/repeat-menu": "重听请按9。",
    "en/repeat-menu": "To hear these options again, press 9.",
    "zh/back-star": "返回上一级菜单请按星号键。",
    "en/back-star": "To return to the previous menu, press star.",
    "zh/press-0-agent": "转人工服务请按0。",
    "en/press-0-agent": "To speak to an agent, press 0.",
    "zh/invalid-input": "对不起，您的输入有误，请重新输入。",
    "en/invalid-input": "Sorry, that entry is not valid. Please try again.",
    "zh/no-input": "对不起，没有收到您的按键。",
    "en/no-input": "Sorry, we did not receive your entry.",
    "zh/too-many-attempts": "您的输入错误次数过多，感谢您的来电，再见。",
    "en/too-many-attempts": "There have been too many invalid entries. Thank you for calling. Goodbye.",
    "zh/please-wait": "请稍候。",
    "en/please-wait": "One moment, please.",
    "zh/goodbye": "感谢您的来电，再见。",
    "en/goodbye": "Thank you for calling. Goodbye.",
    "zh/service-unavailable": "对不起，系统暂时无法提供服务，请稍后再拨。",
    "en/service-unavailable": "Sorry, the service is temporarily unavailable. Please call again later.",
    "zh/transfer-agent": "正在为您转接人工客服，请稍候。",
    "en/transfer-agent": "Transferring you to an agent. Please hold.",
    "zh/agents-busy": "对不起，客服人员正忙，请继续等候，或稍后再拨。",
    "en/agents-busy": "All our agents are busy. Please hold, or call again later.",
    "zh/agents-closed": "人工服务时间为交易日上午八点半至下午五点，请在服务时间内来电。",
    "en/agents-closed": (
        "Agents are available on trading days from 8:30 in the morning to 5 in the afternoon. "
        "Please call during those hours."
    ),
    "zh/risk-notice": "股市有风险，投资需谨慎。",
    "en/risk-notice": "Investing in shares carries risk. Please invest with care.",
    # Logging in to phone trading.
    "zh/enter-account": "请输入您的资金账号，以井号键结束。",
    "en/enter-account": "Please enter your fund account number, followed by the hash key.",
    "zh/enter-password": "请输入您的交易密码，以井号键结束。",
    "en/enter-password": "Please enter your trading password, followed by the hash key.",
    "zh/account-not-found": "您输入的资金账号不存在，请重新输入。",
    "en/account-not-found": "That fund account number was not found. Please try again.",
    "zh/wrong-password": "密码错误，请重新输入。",
    "en/wrong-password": "The password is incorrect. Please try again.",
    "zh/account-locked": "由于密码连续输错，您的账户已被锁定。请携带本人有效身份证件到开户营业部办理解锁，或联系人工客服。",
    "en/account-locked": (
        "Your account has been locked after too many incorrect passwords. "
        "Please visit your branch with your identity card, or speak to an agent, to unlock it."
    ),
    "zh/caller-not-allowed": "您所使用的电话号码未开通本账户的电话委托，请使用预留的电话号码拨打。",
    "en/caller-not-allowed": (
        "Phone trading for this account is not enabled for the number you are calling from. "
        "Please call from your registered number."
    ),
    "zh/market-closed": "现在是非交易时间，暂不受理委托，您仍可查询资金和持仓。",
    "en/market-closed": (
        "The market is closed. Orders are not accepted now, but you can still check your funds and positions."
    ),
    # The trading menu and placing an order.
    "zh/trading-menu": "买入请按1，卖出请按2，撤单请按3，查询请按4，修改密码请按5，返回上一级菜单请按星号键。",
    "en/trading-menu": (
        "To buy, press 1. To sell, press 2. To cancel an order, press 3. For account enquiries, press 4. "
        "To change your password, press 5. To return to the main menu, press star."
    ),
    "zh/enter-stock-code": "请输入六位股票代码，以井号键结束。",
    "en/enter-stock-code": "Please enter the six-digit stock code, followed by the hash key.",
    "zh/stock-not-found": "您输入的股票代码不存在，请重新输入。",
    "en/stock-not-found": "That stock code was not found. Please try again.",
    "zh/stock-suspended": "该股票今日停牌，暂停交易。",
    "en/stock-suspended": "That stock is suspended from trading today.",
    "zh/enter-price": "请输入委托价格，星号键代表小数点，以井号键结束。",
    "en/enter-price": "Please enter your price, using the star key for the decimal point, followed by the hash key.",
    "zh/price-outside-limits": "您输入的价格超出今日涨跌停价格范围，请重新输入。",
    "en/price-outside-limits": "That price is outside today's price limits. Please try again.",
    "zh/price-too-precise": "委托价格最多保留两位小数，请重新输入。",
    "en/price-too-precise": "A price can have at most two decimal places. Please try again.",
    "zh/enter-quantity": "请输入委托数量，以井号键结束。",
    "en/enter-quantity": "Please enter the number of shares, followed by the hash key.",
    "zh/quantity-not-lot": "买入数量须为一百股的整数倍，请重新输入。",
    "en/quantity-not-lot": "Shares must be bought in multiples of one hundred. Please try again.",
    "zh/insufficient-funds": "您的可用资金不足。",
    "en/insufficient-funds": "You do not have enough available funds for this order.",
    "zh/insufficient-shares": "您的可卖股份不足。",
    "en/insufficient-shares": "You do not have enough shares available to sell.",
    "zh/over-daily-limit": "该笔委托超出您电话委托的当日限额。",
    "en/over-daily-limit": "This order is over your daily phone trading limit.",
    # "您委托买入，股票代码 六〇〇五一九，价格 ..., 数量 ... 股": the codes,
    # prices and quantities come from say.py.
    "zh/confirm-buy": "您委托买入，",
    "en/confirm-buy": "You are buying",
    "zh/confirm-sell": "您委托卖出，",
    "en/confirm-sell": "You are selling",
    "zh/stock-code": "股票代码",
    "en/stock-code": "stock code",
    "zh/at-price": "价格",
    "en/at-price": "at a price of",
    "zh/quantity": "数量",
    "en/quantity": "quantity",
    "zh/confirm-or-reenter": "确认请按1，重新输入请按2。",
    "en/confirm-or-reenter": "To confirm, press 1. To re-enter, press 2.",
    "zh/order-placed": "您的委托已提交，委托编号是",
    "en/order-placed": "Your order has been placed. Your order number is",
    "zh/order-not-placed": "委托未提交。",
    "en/order-not-placed": "The order has not been placed.",
    "zh/order-rejected": "对不起，您的委托未被受理。",
    "en/order-rejected": "Sorry, your order was not accepted.",
    # Cancelling.
    "zh/enter-order-number": "请输入要撤销的委托编号，以井号键结束。",
    "en/enter-order-number": "Please enter the number of the order to cancel, followed by the hash key.",
    "zh/order-number-not-found": "没有找到该委托编号，请重新输入。",
    "en/order-number-not-found": "That order number was not found. Please try again.",
    "zh/cancel-submitted": "撤单申请已提交。",
    "en/cancel-submitted": "Your cancellation has been submitted.",
    "zh/order-not-cancellable": "该笔委托已全部成交或已撤销，不能撤单。",
    "en/order-not-cancellable": "That order has already been filled or cancelled, and cannot be cancelled.",
    # Enquiries.
    "zh/query-menu": "查询资金请按1，查询持仓请按2，查询当日委托请按3，查询当日成交请按4，返回请按星号键。",
    "en/query-menu": (
        "For your funds, press 1. For your positions, press 2. For today's orders, press 3. "
        "For today's trades, press 4. To go back, press star."
    ),
    "zh/funds-available": "您的可用资金为",
    "en/funds-available": "Your available funds are",
    "zh/funds-frozen": "冻结资金为",
    "en/funds-frozen": "Funds frozen for open orders are",
    "zh/total-assets": "总资产为",
    "en/total-assets": "Your total assets are",
    "zh/positions-intro": "您的持仓如下。",
    "en/positions-intro": "Here are your positions.",
    "zh/holding": "持有",
    "en/holding": "holding",
    "zh/available-to-sell": "可卖",
    "en/available-to-sell": "available to sell",
    "zh/no-positions": "您目前没有持仓。",
    "en/no-positions": "You have no positions.",
    "zh/no-orders-today": "您今日没有委托。",
    "en/no-orders-today": "You have no orders today.",
    "zh/no-trades-today": "您今日没有成交。",
    "en/no-trades-today": "You have no trades today.",
    "zh/order-number": "委托编号",
    "en/order-number": "order number",
    "zh/buy": "买入",
    "en/buy": "buy",
    "zh/sell": "卖出",
    "en/sell": "sell",
    "zh/status-pending": "未成交",
    "en/status-pending": "not yet filled",
    "zh/status-partly-filled": "部分成交",
    "en/status-partly-filled": "partly filled",
    "zh/status-filled": "已成交",
    "en/status-filled": "filled",
    "zh/status-cancelled": "已撤单",
    "en/status-cancelled": "cancelled",
    "zh/status-rejected": "废单",
    "en/status-rejected": "rejected",
    "zh/next-or-back": "收听下一条请按1，返回请按星号键。",
    "en/next-or-back": "For the next one, press 1. To go back, press star.",
    "zh/end-of-list": "已全部播报完毕。",
    "en/end-of-list": "That is the end of the list.",
    # Changing the trading password.
    "zh/enter-new-password": "请输入六位新密码，以井号键结束。",
    "en/enter-new-password": "Please enter your new six-digit password, followed by the hash key.",
    "zh/reenter-new-password": "请再次输入新密码，以井号键结束。",
    "en/reenter-new-password": "Please enter the new password again, followed by the hash key.",
    "zh/passwords-differ": "两次输入的密码不一致，请重新输入。",
    "en/passwords-differ": "The two passwords are different. Please try again.",
    "zh/password-too-simple": "密码过于简单，请不要使用相同或连续的数字。",
    "en/password-too-simple": "That password is too simple. Please do not use repeated or consecutive digits.",
    "zh/password-changed": "密码修改成功，请牢记您的新密码。",
    "en/password-changed": "Your password has been changed. Please remember your new password.",
    # The voice information service.
    "zh/info-menu": "行情查询请按1，公告信息请按2，市场资讯请按3，返回上一级菜单请按星号键。",
    "en/info-menu": (
        "For share prices, press 1. For bulletins, press 2. For market news, press 3. "
        "To return to the main menu, press star."
    ),
    "zh/last-price": "最新价",
    "en/last-price": "last price",
    "zh/previous-close": "昨收盘",
    "en/previous-close": "previous close",
    "zh/open-price": "开盘价",
    "en/open-price": "open",
    "zh/high-price": "最高价",
    "en/high-price": "high",
    "zh/low-price": "最低价",
    "en/low-price": "low",
    "zh/change": "涨跌幅",
    "en/change": "change",
    "zh/up": "上涨",
    "en/up": "up",
    "zh/down": "下跌",
    "en/down": "down",
    "zh/unchanged": "平盘",
    "en/unchanged": "unchanged",
    "zh/volume": "成交量",
    "en/volume": "volume",
    "zh/bulletins-menu": "收听最新公告请按1，上一条请按4，重听请按5，下一条请按6，返回请按星号键。",
    "en/bulletins-menu": (
        "For the latest bulletin, press 1. For the previous one, press 4. To hear it again, press 5. "
        "For the next one, press 6. To go back, press star."
    ),
    "zh/no-bulletins": "目前没有新的公告。",
    "en/no-bulletins": "There are no new bulletins.",
    "zh/end-of-bulletin": "本条公告播放完毕。",
    "en/end-of-bulletin": "End of bulletin.",
    "zh/choose-category": "请按类别编号选择公告，编辑录制公告请按9，返回请按星号键。",
    "en/choose-category": (
        "Please press the number of a bulletin category. Editors recording a bulletin, press 9. "
        "To go back, press star."
    ),
    "zh/choose-category-to-record": "请按类别编号选择要录制的公告类别，返回请按星号键。",
    "en/choose-category-to-record": (
        "Please press the number of the category to record a bulletin for. To go back, press star."
    ),
    "zh/no-more-bulletins": "没有更多公告了。",
    "en/no-more-bulletins": "There are no more bulletins.",
    "zh/enter-editor-id": "请输入编辑工号，以井号键结束。",
    "en/enter-editor-id": "Please enter your editor number, followed by the hash key.",
    "zh/enter-pin": "请输入密码，以井号键结束。",
    "en/enter-pin": "Please enter your PIN, followed by the hash key.",
    "zh/pin-locked": "由于密码连续输错，该号码已被锁定，请联系系统管理员。",
    "en/pin-locked": "This number has been locked after too many wrong PINs. Please contact the administrator.",
    "zh/bulletin-published": "公告已发布。",
    "en/bulletin-published": "The bulletin has been published.",
    "zh/price-alert": "您好，这里是证券公司客户服务中心，您设置的股价提醒已触发。",
    "en/price-alert": "Hello, this is your broker's customer service centre with the price alert you set.",
    # Expert mailboxes: callers listening and leaving messages, experts
    # recording their commentary and hearing messages.
    "zh/enter-mailbox": "请输入专家信箱号码，以井号键结束。",
    "en/enter-mailbox": "Please enter the expert's mailbox number, followed by the hash key.",
    "zh/mailbox-not-found": "该信箱不存在，请重新输入。",
    "en/mailbox-not-found": "That mailbox does not exist. Please try again.",
    "zh/mailbox-menu": "收听专家点评请按1，给专家留言请按2，返回请按星号键。",
    "en/mailbox-menu": (
        "To hear the expert's commentary, press 1. To leave a message for the expert, press 2. "
        "To go back, press star."
    ),
    "zh/mailbox-empty": "该信箱暂无新的内容。",
    "en/mailbox-empty": "This mailbox has nothing new.",
    "zh/mailbox-full": "对不起，该信箱已满，暂时不能留言。",
    "en/mailbox-full": "Sorry, this mailbox is full and cannot take messages now.",
    "zh/record-after-tone": "请在提示音后开始录音，",
    "en/record-after-tone": "Please speak after the tone.",
    "zh/press-hash-to-finish": "录音完毕请按井号键。",
    "en/press-hash-to-finish": "Press the hash key when you have finished.",
    "zh/recording-too-short": "对不起，没有录到您的声音，请重新录音。",
    "en/recording-too-short": "Sorry, nothing was recorded. Please try again.",
    "zh/review-recording": "试听请按1，保存请按2，重新录音请按3。",
    "en/review-recording": "To listen to your recording, press 1. To save it, press 2. To record it again, press 3.",
    "zh/message-saved": "您的留言已保存，谢谢。",
    "en/message-saved": "Your message has been saved. Thank you.",
    "zh/recording-deleted": "录音已删除。",
    "en/recording-deleted": "The recording has been deleted.",
    "zh/enter-mailbox-password": "请输入信箱密码，以井号键结束。",
    "en/enter-mailbox-password": "Please enter your mailbox password, followed by the hash key.",
    "zh/you-have": "您有",
    "en/you-have": "You have",
    "zh/new-messages": "条新留言。",
    "en/new-messages": "new messages.",
    "zh/message-menu": "重听请按1，删除请按2，下一条请按3，返回请按星号键。",
    "en/message-menu": (
        "To hear it again, press 1. To delete it, press 2. For the next message, press 3. To go back, press star."
    ),
    "zh/message-deleted": "留言已删除。",
    "en/message-deleted": "The message has been deleted.",
    "zh/no-more-messages": "没有更多留言了。",
    "en/no-more-messages": "There are no more messages.",
    "zh/record-commentary": "请在提示音后录制您的点评，录制完毕请按井号键。",
    "en/record-commentary": (
        "Please record your commentary after the tone, and press the hash key when you have finished."
    ),
    "zh/commentary-published": "您的点评已发布。",
    "en/commentary-published": "Your commentary has been published.",
    "zh/experts-menu": "收听名家股评请按1，专家录制点评请按9，返回请按星号键。",
    "en/experts-menu": (
        "To hear the experts' commentary, press 1. Experts recording a commentary, press 9. "
        "To go back, press star."
    ),
    "zh/commentary-menu": "收听最新点评请按1，上一条请按4，重听请按5，下一条请按6，返回请按星号键。",
    "en/commentary-menu": (
        "For the latest commentary, press 1. For the previous one, press 4. To hear it again, press 5. "
        "For the next one, press 6. To go back, press star."
    ),
    "zh/no-more-commentaries": "没有更多点评了。",
    "en/no-more-commentaries": "There are no more commentaries.",
    "zh/expert-menu": "录制新点评请按1，管理已录点评请按2，返回请按星号键。",
    "en/expert-menu": (
        "To record a new commentary, press 1. To manage your commentaries, press 2. To go back, press star."
    ),
    "zh/publish-now": "立即发布请按1，保存为草稿请按2。",
    "en/publish-now": "To publish it now, press 1. To keep it as a draft, press 2.",
    "zh/commentary-saved": "点评已保存为草稿。",
    "en/commentary-saved": "Your commentary has been saved as a draft.",
    "zh/commentary-draft": "草稿。",
    "en/commentary-draft": "Draft.",
    "zh/commentary-is-published": "已发布。",
    "en/commentary-is-published": "Published.",
    "zh/manage-commentary": "发布请按1，删除请按2，下一条请按3，返回请按星号键。",
    "en/manage-commentary": (
        "To publish it, press 1. To delete it, press 2. For the next one, press 3. To go back, press star."
    ),
})

_NAME = re.compile(r"([a-z]{2,3})/([a-z0-9][a-z0-9-]*)\Z")


class PromptPackError(Exception):
    """The pack cannot be built or read; C{problems} are one line each."""

    def __init__(self, problems, report=None):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        self.report = report
        super().__init__("\n".join(self.problems))


class SynthesisError(PromptPackError):
    """The synthesiser failed on a prompt, or is missing."""


class PromptNotFound(PromptPackError, LookupError):
    """No file for a prompt name."""


# Synthesis.


class Espeak:
    """
    espeak-ng as a synthesiser for L{build_pack}: C{engine} names it and its
    version, C{voice(language)} says how a language is spoken (both go in
    the manifest, so that a change of either remakes the prompts), and
    calling it with a text and a language gives C{(rate, samples)}, 16-bit
    mono.

    Mandarin uses C{cmn-latn-pinyin}, not C{cmn}: espeak-ng 1.51's Mandarin
    dictionary gives most characters as tone-numbered pinyin, which the
    C{cmn} voice then reads as English letters ("tuo1" as "t-u-o one"); the
    pinyin voice reads it as Mandarin.  English is British, like say.py's
    numbers ("one hundred and five") and the "hash key" of the phrases.
    The text goes in on standard input (no shell, nothing on the command
    line that could be taken for an option).
    """

    VOICES = MappingProxyType({"zh": "cmn-latn-pinyin", "en": "en-gb"})
    # espeak-ng's words per minute.  Its default, 175, is about 3.5
    # syllables a second in Mandarin, pauses included: clear on a phone
    # line.  English a little slower than the default, as IVRs speak.
    SPEEDS = MappingProxyType({"zh": 175, "en": 160})

    def __init__(self, executable="espeak-ng", timeout=30.0):
        self.executable = executable
        self.timeout = timeout
        self._engine = None

    def _run(self, arguments, what, stdin=b""):
        try:
            completed = subprocess.run(
                [self.executable, *arguments], input=stdin, capture_output=True, timeout=self.timeout
            )
        except FileNotFoundError:
            raise SynthesisError(
                f"{what}: {self.executable} is not installed (make run and make test install it; "
                "or: .ci/ensure-debian-packages espeak-ng)"
            ) from None
        except OSError as e:
            raise SynthesisError(f"{what}: cannot run {self.executable}: {e.strerror}") from None
        except subprocess.TimeoutExpired:
            raise SynthesisError(f"{what}: {self.executable} did not finish within {self.timeout:g} s") from None
        stderr = " ".join(completed.stderr.decode("utf-8", "replace").split())
        if completed.returncode:
            raise SynthesisError(
                f"{what}: {self.executable} exited with status {completed.returncode}: {stderr or 'no message'}"
            )
        return completed.stdout, stderr

    @property
    def engine(self):
        """C{"espeak-ng 1.51"}: the version the prompts are made with."""
        if self._engine is None:
            out, _ = self._run(["--version"], "espeak-ng version")
            match = re.search(rb"text-to-speech: (\S+)", out)
            if match is None:
                raise SynthesisError(f"espeak-ng version: cannot read it in {out[:200]!r}")
            self._engine = f"espeak-ng {match.group(1).decode('ascii', 'replace')}"
        return self._engine

    def voice(self, language):
        return f"{self.VOICES[language]} -s {self.SPEEDS[language]}"

    def __call__(self, text, language):
        out, stderr = self._run(
            ["-v", self.VOICES[language], "-s", str(self.SPEEDS[language]), "-b", "1", "-z", "--stdout", "--stdin"],
            f"{language} {text!r}",
            stdin=text.encode("utf-8"),
        )
        try:
            tag, channels, rate, bits, data = _parse_wav(out)
        except ValueError as e:
            raise SynthesisError(
                f"{language} {text!r}: espeak-ng wrote no usable WAV ({e}): {stderr or 'no message'}"
            ) from None
        if (tag, channels, bits) != (1, 1, 16):
            raise SynthesisError(f"{language} {text!r}: espeak-ng wrote format {tag}, {channels} channels, {bits} bits")
        return rate, _samples(data)


espeak = Espeak()


def _parse_wav(data):
    """
    (format tag, channels, rate, bits, data) of a RIFF WAVE in bytes.
    espeak-ng writing to a pipe cannot go back to fill in the sizes and
    leaves them near 2**31: the data runs to the end of what we have.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF WAVE")
    offset, fmt = 12, None
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], int.from_bytes(data[offset + 4 : offset + 8], "little")
        start = offset + 8
        if chunk == b"fmt " and size >= 16:
            fields = data[start : start + 16]
            fmt = (
                int.from_bytes(fields[0:2], "little"),
                int.from_bytes(fields[2:4], "little"),
                int.from_bytes(fields[4:8], "little"),
                int.from_bytes(fields[14:16], "little"),
            )
            if fmt[0] == 0xFFFE and size >= 26:
                # WAVE_FORMAT_EXTENSIBLE: the subformat begins with the tag.
                fmt = (int.from_bytes(data[start + 24 : start + 26], "little"),) + fmt[1:]
        elif chunk == b"data":
            if fmt is None:
                raise ValueError("data before fmt")
            return (*fmt, data[start : start + size])
        offset = start + size + size % 2
    raise ValueError("no data chunk")


def _samples(data):
    samples = array("h")
    samples.frombytes(data[: len(data) // 2 * 2])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


# Signal processing.

# The resampler's low-pass: flat to 3.4 kHz (the telephone band), 60 dB
# down from 4.4 kHz, so what still folds back about 4 kHz lands above
# 3.6 kHz.
_PASS_HZ = 3400
_STOP_HZ = 4400
_ATTENUATION_DB = 60.0


def _bessel_i0(x):
    total = term = 1.0
    k = 0
    while term > 1e-12 * total:
        k += 1
        term *= (x / (2 * k)) ** 2
        total += term
    return total


_filters = {}


def _polyphase(rate_in, rate_out):
    """
    The resampler from C{rate_in} to C{rate_out}: (up, down, half, tables),
    output sample M{n} lying between input samples at time M{n*down/up}, and
    C{tables[p]} the 2*half taps for the fractional position M{p/up}, from a
    Kaiser-windowed sinc sized by Kaiser's formula for the attenuation and
    transition width above (82 taps from 22,050 Hz).  Each phase is scaled to
    a gain of exactly 1, so no phase is louder than another.
    """
    key = (rate_in, rate_out)
    if key in _filters:
        return _filters[key]
    common = math.gcd(rate_in, rate_out)
    up, down = rate_out // common, rate_in // common
    nyquist = min(rate_in, rate_out) / 2
    stop = min(_STOP_HZ, nyquist * 1.1)
    passband = min(_PASS_HZ, nyquist * 0.85)
    cutoff = (passband + stop) / 2 / rate_in
    width = (stop - passband) / rate_in
    length = math.ceil((_ATTENUATION_DB - 7.95) / (2.285 * 2 * math.pi * width))
    half = length // 2 + 1
    beta = 0.1102 * (_ATTENUATION_DB - 8.7)
    scale = _bessel_i0(beta)
    tables = []
    for phase in range(up):
        fraction = phase / up
        taps = []
        for j in range(-half + 1, half + 1):
            distance = j - fraction
            edge = distance / half
            window = _bessel_i0(beta * math.sqrt(max(0.0, 1.0 - edge * edge))) / scale
            if distance == 0:
                sinc = 2 * cutoff
            else:
                sinc = math.sin(2 * math.pi * cutoff * distance) / (math.pi * distance)
            taps.append(sinc * window)
        total = sum(taps)
        tables.append([tap / total for tap in taps])
    _filters[key] = (up, down, half, tables)
    return _filters[key]


if hasattr(math, "sumprod"):  # Python 3.12
    _dot = math.sumprod
else:

    def _dot(a, b):
        return sum(map(operator.mul, a, b))


def resample(samples, rate_in, rate_out=SAMPLE_RATE):
    """C{samples} (numbers) at C{rate_in} as a list of floats at C{rate_out}."""
    if rate_in == rate_out:
        return [float(sample) for sample in samples]
    up, down, half, tables = _polyphase(rate_in, rate_out)
    padded = [0.0] * half + list(samples) + [0.0] * half
    out = []
    for n in range(len(samples) * up // down):
        base, phase = divmod(n * down, up)
        # Input samples base-half+1 .. base+half, shifted by the padding.
        out.append(_dot(tables[phase], padded[base + 1 : base + 1 + 2 * half]))
    return out


_MARGIN_S = 0.050
_TRIM_BELOW_DB = 40.0  # under the loudest 10 ms: silence to trim
_ACTIVE_WITHIN_DB = 30.0  # of the loudest 20 ms: speech, counted in the level
_TARGET_RMS_DBFS = -20.0
_PEAK_DBFS = -3.0
_FADE_S = 0.005
_FULL_SCALE = 32767


def _frame_rms(samples, size):
    return [
        math.sqrt(sum(x * x for x in samples[i : i + size]) / len(samples[i : i + size]))
        for i in range(0, len(samples), size)
    ]


def trim(samples, rate, margin=_MARGIN_S):
    """
    C{samples} without their silence at either end beyond C{margin} seconds:
    silence is every 10 ms quieter than the loudest 10 ms by 40 dB or more.
    An empty list when it is all silence.
    """
    size = rate // 100
    levels = _frame_rms(samples, size)
    loudest = max(levels, default=0.0)
    if loudest < 1.0:
        return []
    threshold = loudest * 10 ** (-_TRIM_BELOW_DB / 20)
    loud = [i for i, level in enumerate(levels) if level > threshold]
    keep = int(margin * rate)
    start = max(0, loud[0] * size - keep)
    end = min(len(samples), (loud[-1] + 1) * size + keep)
    return samples[start:end]


def level(samples, rate):
    """
    C{samples} scaled so that speech is at -20 dBFS RMS (counting the 20 ms
    within 30 dB of the loudest, a simple active speech level), unless that
    would put a peak above -3 dBFS; faded in and out over 5 ms so nothing
    clicks where prompts meet; rounded to 16-bit.
    """
    size = rate // 50
    levels = _frame_rms(samples, size)
    loudest = max(levels, default=0.0)
    active = [x for x in levels if x >= loudest * 10 ** (-_ACTIVE_WITHIN_DB / 20)]
    rms = math.sqrt(sum(x * x for x in active) / len(active)) if active else 0.0
    peak = max((abs(x) for x in samples), default=0.0)
    if rms == 0 or peak == 0:
        return array("h", bytes(2 * len(samples)))
    gain = min(
        _FULL_SCALE * 10 ** (_TARGET_RMS_DBFS / 20) / rms,
        _FULL_SCALE * 10 ** (_PEAK_DBFS / 20) / peak,
    )
    out = [x * gain for x in samples]
    fade = min(int(_FADE_S * rate), len(out) // 2)
    for i in range(fade):
        ramp = 0.5 - 0.5 * math.cos(math.pi * i / fade)
        out[i] *= ramp
        out[-1 - i] *= ramp
    return array("h", (max(-_FULL_SCALE, min(_FULL_SCALE, round(x))) for x in out))


def telephone_audio(rate, samples):
    """
    Synthesised speech (16-bit mono at C{rate}) as 8 kHz 16-bit samples,
    trimmed and levelled; empty when it is all silence.  Trimmed once
    before resampling (with room to spare for the filter) to resample less.
    """
    rough = trim(samples, rate, margin=2 * _MARGIN_S)
    if not rough:
        return array("h")
    return level(trim(resample(rough, rate), SAMPLE_RATE), SAMPLE_RATE)


def _wav_bytes(samples):
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


# The catalogue.


def _split(name):
    match = _NAME.match(name)
    if match is None:
        raise PromptPackError(f"prompt name {name!r} is not LANG/SLUG (lower-case letters, digits, hyphens)")
    return match.groups()


def _vocabulary():
    """say.py's VOCABULARY, or None while that module does not exist."""
    try:
        say = importlib.import_module("callcenter.ivr.say")
    except ModuleNotFoundError as e:
        if e.name != "callcenter.ivr.say":
            raise
        return None
    return say.VOCABULARY


def catalogue(languages=LANGUAGES):
    """
    Every prompt name of C{languages} with its text: L{PHRASES} and say.py's
    VOCABULARY.  The same name with two texts is an error.
    """
    vocabulary = _vocabulary() or {}
    texts, problems = {}, []
    for source in (PHRASES, vocabulary):
        for name, text in source.items():
            language, _ = _split(name)
            if language not in languages:
                continue
            if texts.get(name, text) != text:
                problems.append(f"prompt {name}: {texts[name]!r} in PHRASES, {text!r} in say.py's VOCABULARY")
            texts[name] = text
    if problems:
        raise PromptPackError(problems)
    return texts


# The pack.


@attrs.define
class BuildReport:
    """What L{build_pack} did, by prompt name."""

    made: list = attrs.Factory(list)
    reused: list = attrs.Factory(list)
    studio: list = attrs.Factory(list)
    # Studio recordings kept although the phrase has changed since.
    studio_outdated: list = attrs.Factory(list)
    removed: list = attrs.Factory(list)
    # One line each: studio recordings no prompt has, say.py missing ...
    warnings: list = attrs.Factory(list)
    languages: dict = attrs.Factory(dict)  # language -> number of prompts


def _sha256(path):
    try:
        with open(path, "rb") as file:
            return hashlib.sha256(file.read()).hexdigest()
    except FileNotFoundError:
        return None


def _write_atomically(path, data):
    """A reader (or a killed build) sees the old file or the new, never half of one."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "wb") as file:
        file.write(data)
    os.replace(temporary, path)


def _read_manifest(directory):
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
        return {entry["name"]: entry for entry in document["prompts"]}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        # Without it we cannot tell our files from files edited by hand.
        raise PromptPackError(
            f"{path}: unreadable ({e}); delete it and build with --force to make every prompt anew"
        ) from None


def _write_manifest(directory, entries):
    document = {
        "format": 1,
        "sample_rate": SAMPLE_RATE,
        "prompts": [entries[name] for name in sorted(entries)],
    }
    text = json.dumps(document, ensure_ascii=False, indent=1) + "\n"
    _write_atomically(os.path.join(directory, MANIFEST), text.encode("utf-8"))


def _studio_entry(name, text, relative, studio_relative, path):
    """The manifest entry of a studio recording, or a PromptError saying why it cannot be played."""
    load_prompt(path, "PCMU")
    with open(path, "rb") as file:
        data = file.read()
    tag, channels, rate, bits, payload = _parse_wav(data)
    samples = len(payload) // (bits // 8) // channels
    return {
        "name": name,
        "language": _split(name)[0],
        "text": text,
        "file": relative,
        "duration_ms": round(samples * 1000 / rate),
        "sha256": hashlib.sha256(data).hexdigest(),
        "source": STUDIO_SOURCE,
        "studio_file": studio_relative,
    }


def build_pack(directory, languages=LANGUAGES, names=None, synthesise=None, force=False, workers=None):
    """
    Make the prompts of C{languages} (all, or only those in C{names}: full
    names like C{"zh/welcome"}, or slugs like C{"welcome"} for every
    language) under C{directory}, reusing what is up to date, and return a
    L{BuildReport}.

    C{synthesise(text, language)} (L{espeak} by default) returns
    C{(rate, samples)} of 16-bit mono speech; its C{engine}
    (C{"espeak-ng 1.51"}) and C{voice(language)} are recorded with each
    prompt.  C{force} makes every synthesised prompt anew, and overwrites
    files edited by hand; studio recordings are kept whatever happens.
    Synthesis runs one prompt at a time; resampling and levelling, most of
    the time, in C{workers} processes (one per CPU by default; 1: in this
    process).

    Raises L{SynthesisError} at the first prompt the synthesiser fails on,
    and L{PromptPackError} listing every studio recording that cannot be
    played and every hand-edited file, after building all the others; the
    manifest is written in either case, so the prompts already made are not
    made again.
    """
    if synthesise is None:
        synthesise = espeak
    for language in languages:
        if language not in LANGUAGES:
            raise PromptPackError(f"language {language!r}: prompts exist for {', '.join(LANGUAGES)}")
    texts = _selected(catalogue(languages), languages, names)
    report = BuildReport()
    if _vocabulary() is None:
        report.warnings.append("callcenter/ivr/say.py does not exist yet: its VOCABULARY is not in the pack")
    manifest = _read_manifest(directory)
    studio_root = os.path.join(directory, STUDIO)
    engine = None
    problems = []
    to_make = []
    for name, text in texts.items():
        language, slug = _split(name)
        report.languages[language] = report.languages.get(language, 0) + 1
        relative = f"{language}/{slug}.wav"
        path = os.path.join(directory, relative)
        entry = manifest.get(name)
        current = _sha256(path)
        studio_relative = f"{STUDIO}/{relative}"
        studio_path = os.path.join(studio_root, relative)

        if current is not None and (entry is None or entry["sha256"] != current) and not force:
            problems.append(
                f"{path}: changed since it was made, or not made by us: to keep it, move it to "
                f"{studio_path}; to replace it, delete it or build with --force"
            )
            continue

        if os.path.exists(studio_path):
            studio_sha = _sha256(studio_path)
            if entry and entry["source"] == STUDIO_SOURCE and entry["sha256"] == studio_sha == current:
                report.studio.append(name)
                if entry["text"] != text:
                    report.studio_outdated.append(name)
                continue
            try:
                new_entry = _studio_entry(name, text, relative, studio_relative, studio_path)
            except (PromptError, ValueError) as e:
                problems.append(f"studio recording of {name}: {e}")
                continue
            with open(studio_path, "rb") as file:
                _write_atomically(path, file.read())
            manifest[name] = new_entry
            report.studio.append(name)
            continue

        if engine is None:
            engine = synthesise.engine
        voice = synthesise.voice(language)
        if (
            not force
            and entry is not None
            and entry["source"] == engine
            and entry["text"] == text
            and entry.get("voice") == voice
            and entry.get("processing") == PROCESSING
            and current == entry["sha256"]
        ):
            report.reused.append(name)
            continue
        to_make.append({
            "name": name,
            "language": language,
            "text": text,
            "file": relative,
            "source": engine,
            "voice": voice,
            "processing": PROCESSING,
        })

    if workers is None:
        workers = os.cpu_count() or 1
    pool = None
    if workers > 1 and len(to_make) > 1:
        pool = concurrent.futures.ProcessPoolExecutor(min(workers, len(to_make)))
    made = []
    try:
        for entry in to_make:
            try:
                rate, samples = synthesise(entry["text"], entry["language"])
            except SynthesisError as e:
                raise SynthesisError(f"prompt {entry['name']}: {e}") from None
            if pool is None:
                made.append((entry, telephone_audio(rate, samples)))
            else:
                made.append((entry, pool.submit(telephone_audio, rate, samples)))
    finally:
        # What was synthesised is kept, even when a later prompt failed.
        try:
            for entry, audio in made:
                if pool is not None:
                    audio = audio.result()
                if not audio:
                    problems.append(f"prompt {entry['name']}: the synthesiser gave only silence for {entry['text']!r}")
                    continue
                data = _wav_bytes(audio)
                _write_atomically(os.path.join(directory, entry["file"]), data)
                entry["duration_ms"] = round(len(audio) * 1000 / SAMPLE_RATE)
                entry["sha256"] = hashlib.sha256(data).hexdigest()
                manifest[entry["name"]] = {key: entry[key] for key in _ENTRY_KEYS if key in entry}
                report.made.append(entry["name"])
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
            if names is None:
                _remove_orphans(directory, manifest, texts, languages, report)
                _unknown_studio_files(studio_root, texts, languages, report)
            os.makedirs(directory, exist_ok=True)
            _write_manifest(directory, manifest)
    if problems:
        raise PromptPackError(problems, report)
    return report


_ENTRY_KEYS = ("name", "language", "text", "file", "duration_ms", "sha256", "source", "voice", "processing")


def _selected(texts, languages, names):
    if names is None:
        return texts
    wanted, unknown = {}, []
    for requested in names:
        matches = [name for name in texts if requested in (name, name.split("/", 1)[1])]
        if not matches:
            unknown.append(f"prompt {requested!r} is not in the catalogue of {', '.join(languages)}")
        wanted.update((name, texts[name]) for name in matches)
    if unknown:
        raise PromptPackError(unknown)
    return wanted


def _remove_orphans(directory, manifest, texts, languages, report):
    """Synthesised prompts no longer in the catalogue go, files and entries."""
    for name, entry in list(manifest.items()):
        if name in texts or entry["language"] not in languages:
            continue
        path = os.path.join(directory, entry["file"])
        if _sha256(path) in (entry["sha256"], None):
            if os.path.exists(path):
                os.remove(path)
            del manifest[name]
            report.removed.append(name)


def _unknown_studio_files(studio_root, texts, languages, report):
    for language in languages:
        folder = os.path.join(studio_root, language)
        if not os.path.isdir(folder):
            continue
        for file_name in sorted(os.listdir(folder)):
            slug, extension = os.path.splitext(file_name)
            if extension == ".wav" and f"{language}/{slug}" not in texts:
                report.warnings.append(
                    f"{os.path.join(folder, file_name)}: no prompt {language}/{slug} in the catalogue, not used"
                )


def resolve(directory, name):
    """The path of prompt C{name}'s WAV file in the pack at C{directory}."""
    language, slug = _split(name)
    path = os.path.join(directory, language, f"{slug}.wav")
    if not os.path.isfile(path):
        raise PromptNotFound(
            f"prompt {name}: no file {path} (build the pack: callcenter prompts build --dir {directory})"
        )
    return path
