"""Fixed vocabularies of the simulated brand: names, regions, channel codes, platform enumerations.

Everything here is invented. Names are built from syllables chosen to read as obviously fake (张测试, 李三).
Every string that can reach the Taobao file must be GBK-encodable, so no emoji outside WeCom nicknames.
"""

from __future__ import annotations

from dataclasses import dataclass

OA_APPID = "wxoa0000000demo01"
MP_APPID = "wxmp0000000demo01"
WECOM_CORP_ID = "wwcorp00000demo01"
CRM_NAME = "demo_crm"

SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万钱严武戴孔汤"
)
# Two-part given names; the first part is often empty. 测+试 and 示+例 make the fakeness visible.
GIVEN_FIRST = ["", "", "", "小", "大", "阿", "测", "示", "某"]
GIVEN_SECOND = list("三四五六七八九明红刚美花试例甲乙丙丁")

# WeChat nickname pieces for WeCom contact names.
NICK_WORDS = ["Sunny", "Lily", "Kevin", "Momo", "Coco", "Leo", "Amy", "Jack", "Yoyo", "Tina", "Max", "Nana"]
NICK_SUFFIXES = ["妈妈", "爸爸", "同学", "宝妈", "酱", "呀", ""]
NICK_DECOR = ["🌸", "🍀", "☀️", "🐱", "A", "~"]

# Taobao nick words: lowercase ascii, never "tb" so nick shapes cannot collide.
TB_WORDS = ["sunny", "lucky", "happy", "xiaomi", "candy", "panda", "miumiu", "kiki", "dudu", "apple"]

# (province, city, weight): weighted toward the big private-domain markets.
REGIONS = [
    ("上海", "上海", 9), ("北京", "北京", 8), ("广东", "广州", 7), ("广东", "深圳", 7), ("广东", "东莞", 2),
    ("浙江", "杭州", 6), ("浙江", "宁波", 2), ("江苏", "南京", 4), ("江苏", "苏州", 4), ("四川", "成都", 5),
    ("湖北", "武汉", 4), ("陕西", "西安", 3), ("重庆", "重庆", 4), ("天津", "天津", 2), ("山东", "济南", 2),
    ("山东", "青岛", 2), ("福建", "厦门", 2), ("福建", "福州", 2), ("湖南", "长沙", 3), ("河南", "郑州", 3),
    ("安徽", "合肥", 2), ("辽宁", "沈阳", 2), ("云南", "昆明", 2), ("广西", "南宁", 1), ("黑龙江", "哈尔滨", 1),
    ("河北", "石家庄", 1), ("江西", "南昌", 1), ("山西", "太原", 1), ("贵州", "贵阳", 1), ("吉林", "长春", 1),
]

# Parts of the fake receiving addresses on orders. Municipalities are written once ("上海市浦东区"), other
# provinces as province + city ("浙江省杭州市"); Taobao separates the parts with spaces.
MUNICIPALITIES = {"上海", "北京", "天津", "重庆"}
AUTONOMOUS_REGIONS = {"广西": "广西壮族自治区", "内蒙古": "内蒙古自治区", "宁夏": "宁夏回族自治区",
                      "新疆": "新疆维吾尔自治区", "西藏": "西藏自治区"}
ADDRESS_DISTRICTS = ["东区", "西区", "南区", "北区", "新区", "高新区"]
ADDRESS_STREETS = ["测试路", "示例街", "样本大道", "演示巷", "虚构路"]


def receiving_address(region: int, key: int, spaced: bool = False) -> str:
    """A fake address in the person's region; `key` (any int) picks district, street and number."""
    province, city, _ = REGIONS[region]
    if province in MUNICIPALITIES:
        parts = [f"{province}市", f"{province}{ADDRESS_DISTRICTS[key % 6]}"]
    else:
        parts = [AUTONOMOUS_REGIONS.get(province, f"{province}省"), f"{city}市", ADDRESS_DISTRICTS[key % 6]]
    parts.append(f"{ADDRESS_STREETS[(key // 6) % 5]}{key % 997 + 1}号")
    return (" " if spaced else "").join(parts)


# How a person first meets the brand; the record written at that moment carries the channel code.
ENTRY_OA_QR = 0      # follows the Official Account by scanning a QR code: qr_scene_str = code
ENTRY_OA_OTHER = 1   # follows the Official Account without a code (search, profile card): organic
ENTRY_WECOM = 2      # added by a WeCom staff member: follow_user.state = code
ENTRY_CRM = 3        # registers as a member in a store: 来源渠道 = code
ENTRY_MP = 4         # opens the mini-program directly: organic
ENTRY_REFERRAL = 5   # invited by a friend through the referral tool: credited to the inviter's channel
ENTRY_NAMES = ["oa_qr", "oa_other", "wecom", "crm", "mp", "referral"]


@dataclass(frozen=True)
class Channel:
    code: str           # "" for organic people, who carry no code anywhere
    weight: float       # share of non-referred people whose first touch this is
    entries: dict       # entry kind -> probability
    add_way: int        # WeCom add_way when the entry is a WeCom add
    name: str           # what the brand's channel lookup would call it
    tag: str            # WeCom "来源" tag staff put on such contacts
    known: bool = True  # False: a code missing from the brand's lookup (typo, test QR, old poster)
    window: tuple | None = None  # (month, day, days) of the start year when joins concentrate
    evening: bool = False        # joins at 19-23h (livestreams)


CHANNELS = [
    Channel("poster_spring", 0.10, {ENTRY_OA_QR: 0.7, ENTRY_WECOM: 0.3}, 1, "春季海报", "海报", window=(2, 1, 89)),
    Channel("poster_autumn", 0.05, {ENTRY_OA_QR: 0.7, ENTRY_WECOM: 0.3}, 1, "秋季海报", "海报", window=(9, 1, 91)),
    Channel("parcel_card", 0.13, {ENTRY_WECOM: 1.0}, 1, "包裹卡", "包裹卡"),
    Channel("live_0312", 0.07, {ENTRY_OA_QR: 0.5, ENTRY_WECOM: 0.5}, 16, "3·12直播", "直播",
            window=(3, 12, 3), evening=True),
    Channel("live_1111", 0.04, {ENTRY_OA_QR: 0.5, ENTRY_WECOM: 0.5}, 16, "双11直播", "直播",
            window=(11, 11, 2), evening=True),
    Channel("ad_moments_01", 0.10, {ENTRY_WECOM: 0.8, ENTRY_OA_QR: 0.2}, 16, "朋友圈广告01", "广告"),
    Channel("ad_channels_02", 0.05, {ENTRY_WECOM: 0.6, ENTRY_OA_QR: 0.4}, 16, "视频号广告02", "广告"),
    Channel("store_qr_sh01", 0.09, {ENTRY_WECOM: 0.5, ENTRY_CRM: 0.5}, 1, "上海门店01", "门店"),
    Channel("store_qr_bj02", 0.06, {ENTRY_WECOM: 0.5, ENTRY_CRM: 0.5}, 1, "北京门店02", "门店"),
    Channel("kol_xhs_07", 0.08, {ENTRY_WECOM: 1.0}, 16, "小红书达人07", "达人"),
    Channel("sms_recall", 0.05, {ENTRY_WECOM: 0.5, ENTRY_OA_QR: 0.5}, 16, "短信召回", "短信"),
    Channel("", 0.12, {ENTRY_OA_OTHER: 0.5, ENTRY_MP: 0.5}, 1, "自然流量", "其他"),
    Channel("qr_test_01", 0.015, {ENTRY_OA_QR: 0.5, ENTRY_WECOM: 0.5}, 1, "", "其他", known=False),
    Channel("zz_old_2019", 0.010, {ENTRY_OA_QR: 0.5, ENTRY_WECOM: 0.5}, 1, "", "其他", known=False),
    Channel("tmp0418", 0.015, {ENTRY_OA_QR: 0.5, ENTRY_WECOM: 0.5}, 1, "", "其他", known=False),
]
# Codes a later QR scan or WeCom add may carry: a second touch that must not override the first.
LATER_TOUCH_CODES = ["store_qr_sh01", "store_qr_bj02", "sms_recall", "poster_autumn", "ad_moments_01"]

# WeChat user/info subscribe_scene values for follows without a brand QR code.
OTHER_SCENES = [
    ("ADD_SCENE_SEARCH", 0.35), ("ADD_SCENE_PROFILE_CARD", 0.15), ("ADD_SCENE_WXA", 0.12),
    ("ADD_SCENE_WECHAT_ADVERTISEMENT", 0.10), ("ADD_SCENE_CHANNELS", 0.08), ("ADD_SCENE_LIVESTREAM", 0.05),
    ("ADD_SCENE_PROFILE_LINK", 0.05), ("ADD_SCENE_PROFILE_ITEM", 0.03), ("ADD_SCENE_ACCOUNT_MIGRATION", 0.02),
    ("ADD_SCENE_REPRINT", 0.02), ("ADD_SCENE_OTHERS", 0.03),
]
OA_TAG_IDS = [2, 100, 101, 105, 108]

STAFF = [f"staff_{i:02d}" for i in range(1, 13)]
STORE_STAFF = {"store_qr_sh01": "store_sh01", "store_qr_bj02": "store_bj02"}
# WeCom add_way for later adds: QR code, phone search, card share, group chat, acquisition link.
LATER_ADD_WAYS = [(1, 0.4), (2, 0.2), (3, 0.15), (4, 0.1), (16, 0.15)]

# Hour-of-day weights for joins (China time): lunch and evening peaks.
HOUR_WEIGHTS = [1, .5, .3, .2, .2, .3, .8, 1.5, 2.5, 3, 3, 3.5, 4, 3.5, 3, 3, 3, 3, 3.5, 4.5, 5, 5, 4, 2.5]

# Mainland mobile prefixes handed to people. 133/138/155/166/177/188/199 are left out so that no person's
# number can equal a junk value (13800138000, 13333333333, ...) or a staff number (166...).
PHONE_PREFIXES = [
    130, 131, 132, 134, 135, 136, 137, 139, 150, 151, 152, 153, 156, 157, 158, 159, 173, 175, 176, 178,
    180, 181, 182, 183, 184, 185, 186, 187, 189, 191, 193, 195, 196, 198,
]
JUNK_PHONES = [
    ("13800138000", 0.2), ("00000000000", 0.12), ("12345678901", 0.12), ("11111111111", 0.06),
    ("13333333333", 0.04), ("18888888888", 0.04), ("null", 0.06), ("-", 0.06),
    # the two staff numbers are filled in per seed (see ids.staff_phones): 0.15 each
]
STAFF_PHONE_WEIGHT = 0.15

MP_STATUSES = ["WAIT_PAY", "PAID", "SHIPPED", "COMPLETED", "REFUNDED", "PARTIAL_REFUND", "CANCELLED"]
TB_UNPAID = "等待买家付款"
TB_PAID = "买家已付款，等待卖家发货"
TB_SHIPPED = "卖家已发货，等待买家确认"
TB_SUCCESS = "交易成功"
TB_CLOSED = "交易关闭"

CRM_TIERS = [("普通会员", 0), ("银卡会员", 1000), ("金卡会员", 3000), ("钻石会员", 5000)]
CRM_GENDER = {0: "未知", 1: "男", 2: "女"}

TB_HEADER = ["订单编号", "买家会员名", "买家实际支付金额", "订单状态", "收货人姓名", "联系手机", "收货地址",
             "订单创建时间", "订单付款时间", "退款金额"]
CRM_HEADER = ["会员卡号", "手机号", "姓名", "性别", "生日", "等级", "积分", "注册时间", "消费金额", "来源渠道"]
MP_LOGIN_HEADER = ["log_id", "appid", "openid", "unionid", "phone", "login_time"]
MP_ORDER_HEADER = ["order_id", "appid", "openid", "unionid", "buyer_phone", "receiver_name", "receiver_phone",
                   "receiver_address", "order_status", "pay_amount_fen", "refund_amount_fen", "created_at", "paid_at"]
REFERRAL_HEADER = ["invite_id", "appid", "inviter_openid", "inviter_unionid", "invitee_openid", "invitee_unionid",
                   "invited_at", "campaign"]
