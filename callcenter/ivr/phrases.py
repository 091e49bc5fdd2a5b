"""
What the IVR says, as data: the fixed phrases of phone trading, the voice
information service and the expert mailboxes, in Mandarin (C{zh/...}, the
default) and English (C{en/...}).  L{callcenter.ivr.prompts} makes the
audio from them.
"""

from types import MappingProxyType

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
    "zh/hotline-welcome": "您好，欢迎致电证券客户服务热线。",
    "en/hotline-welcome": "Welcome to the securities customer service line.",
    # A main menu is composed: each option's phrase, then its key's digit.
    "zh/option-trading": "电话委托请按",
    "en/option-trading": "For phone trading, press",
    "zh/option-bulletins": "行情及资讯服务请按",
    "en/option-bulletins": "For market information and bulletins, press",
    "zh/option-experts": "专家信箱请按",
    "en/option-experts": "For expert mailboxes, press",
    "zh/no-agent": "对不起，暂时无法为您转接人工服务，请稍后再拨。",
    "en/no-agent": "Sorry, no agent can take your call now. Please call again later.",
    "zh/language-offer": "普通话服务请按1。",
    "en/language-offer": "For service in English, press 2.",
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
    "zh/star-for-quotes": "不登录查询行情请按星号键。",
    "en/star-for-quotes": "For share prices without logging in, press star.",
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
    "zh/trading-menu": "买入请按1，卖出请按2，撤单请按3，查询请按4，修改密码请按5，行情查询请按6，返回上一级菜单请按星号键。",
    "en/trading-menu": (
        "To buy, press 1. To sell, press 2. To cancel an order, press 3. For account enquiries, press 4. "
        "To change your password, press 5. For share prices, press 6. To return to the main menu, press star."
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
    "zh/market-price": "市价",
    "en/market-price": "at the market price",
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
    "zh/orders-intro": "您今日的委托如下，最近的在前。",
    "en/orders-intro": "Here are today's orders, the latest first.",
    "zh/fills-intro": "您今日的成交如下，最近的在前。",
    "en/fills-intro": "Here are today's trades, the latest first.",
    "zh/fill-price": "成交价格",
    "en/fill-price": "traded at",
    "zh/fill-quantity": "成交数量",
    "en/fill-quantity": "quantity traded",
    "zh/status-cancel-requested": "已申请撤单",
    "en/status-cancel-requested": "cancellation requested",
    "zh/more-or-back": "收听更多请按1，返回请按星号键。",
    "en/more-or-back": "For more, press 1. To go back, press star.",
    "zh/next-or-back": "收听下一条请按1，返回请按星号键。",
    "en/next-or-back": "For the next one, press 1. To go back, press star.",
    "zh/end-of-list": "已全部播报完毕。",
    "en/end-of-list": "That is the end of the list.",
    # Changing the trading password.
    "zh/enter-old-password": "请输入原交易密码，以井号键结束。",
    "en/enter-old-password": "Please enter your current trading password, followed by the hash key.",
    "zh/enter-new-password": "请输入六位新密码，以井号键结束。",
    "en/enter-new-password": "Please enter your new six-digit password, followed by the hash key.",
    "zh/reenter-new-password": "请再次输入新密码，以井号键结束。",
    "en/reenter-new-password": "Please enter the new password again, followed by the hash key.",
    "zh/passwords-differ": "两次输入的密码不一致，请重新输入。",
    "en/passwords-differ": "The two passwords are different. Please try again.",
    "zh/password-too-simple": "密码过于简单，请不要使用相同或连续的数字。",
    "en/password-too-simple": "That password is too simple. Please do not use repeated or consecutive digits.",
    "zh/new-password-six-digits": "新密码须为六位数字，请重新输入。",
    "en/new-password-six-digits": "The new password must be six digits. Please try again.",
    "zh/password-not-changed": "密码未修改。",
    "en/password-not-changed": "Your password has not been changed.",
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
    "zh/bid-price": "买一价",
    "en/bid-price": "best bid",
    "zh/ask-price": "卖一价",
    "en/ask-price": "best offer",
    "zh/enter-quote-code": "请输入六位股票代码查询行情，以井号键结束，返回请按星号键。",
    "en/enter-quote-code": (
        "Please enter the six-digit code of a stock for its price, followed by the hash key. "
        "To go back, press star."
    ),
    "zh/no-quote": "该股票今日暂无成交行情。",
    "en/no-quote": "There is no trading price for that stock yet today.",
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
    # A category menu with the categories' names: "<name> press <key>" each, then these.
    "zh/press": "请按",
    "en/press": "press",
    "zh/editors-press-9": "编辑录制公告请按9，返回请按星号键。",
    "en/editors-press-9": "Editors recording a bulletin, press 9. To go back, press star.",
    "zh/choose-category-to-record": "请按类别编号选择要录制的公告类别，返回请按星号键。",
    "en/choose-category-to-record": (
        "Please press the number of the category to record a bulletin for. To go back, press star."
    ),
    "zh/no-category-to-record": "对不起，您没有可以录制公告的类别，请联系系统管理员。",
    "en/no-category-to-record": (
        "Sorry, there is no category you may record bulletins in. Please contact the administrator."
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
