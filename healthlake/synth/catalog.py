"""Reference tables the synthetic region draws from: ages, diseases, codes, drugs, vaccines, homophones.

Figures are rounded public statistics for China (2020 census age structure, national chronic-disease
surveys), good enough to make distributions look like a real province; they are not epidemiology.
"""

from __future__ import annotations

from typing import NamedTuple

# Share of the population by five-year age band (0-4 … 85+), after the 7th national census (2020).
AGE_BAND_WEIGHTS: tuple[float, ...] = (
    5.5,
    6.3,
    6.0,
    5.2,
    5.3,
    6.4,
    8.8,
    6.9,
    6.6,
    8.0,
    8.6,
    7.2,
    5.2,
    5.2,
    3.6,
    2.3,
    1.5,
    1.0,
)

# Household sizes 1..5 and their shares (mean ≈ 2.6 persons, as in the 2020 census).
HOUSEHOLD_SIZE_WEIGHTS: tuple[float, ...] = (0.25, 0.30, 0.21, 0.13, 0.11)


class ChronicCondition(NamedTuple):
    """A chronic condition with its age-banded prevalence and the ICD-10 code clinicians write."""

    name: str
    icd10: str
    display: str
    prevalence: tuple[tuple[int, float], ...]  # (minimum age, prevalence from that age on)


CHRONIC_CONDITIONS: tuple[ChronicCondition, ...] = (
    ChronicCondition("hypertension", "I10.x00", "原发性高血压", ((18, 0.10), (45, 0.30), (60, 0.55))),
    ChronicCondition("diabetes", "E11.900", "2型糖尿病", ((18, 0.04), (45, 0.12), (60, 0.20))),
    ChronicCondition("copd", "J44.900", "慢性阻塞性肺疾病", ((40, 0.08), (60, 0.14))),
    ChronicCondition("chd", "I25.103", "冠状动脉粥样硬化性心脏病", ((45, 0.03), (60, 0.08))),
    ChronicCondition("stroke", "I63.900", "脑梗死", ((50, 0.02), (65, 0.05))),
)
CONDITION_BY_NAME = {c.name: c for c in CHRONIC_CONDITIONS}


class Code(NamedTuple):
    """A coded concept: code, Chinese display, and an English label for international users."""

    code: str
    display: str
    label: str


# Acute diagnoses (ICD-10 with the Chinese clinical extension suffix of the national 临床版 2.0).
ACUTE_DIAGNOSES: tuple[Code, ...] = (
    Code("J06.900", "急性上呼吸道感染", "acute upper respiratory infection"),
    Code("K29.700", "胃炎", "gastritis"),
    Code("M54.500", "腰痛", "low back pain"),
    Code("J20.900", "急性支气管炎", "acute bronchitis"),
    Code("A09.900", "感染性腹泻", "infectious diarrhoea"),
    Code("N39.000", "泌尿道感染", "urinary tract infection"),
    Code("R51.x00", "头痛", "headache"),
    Code("L30.900", "皮炎", "dermatitis"),
)
INPATIENT_DIAGNOSES: tuple[Code, ...] = (
    Code("J18.900", "肺炎", "pneumonia"),
    Code("I50.900", "心力衰竭", "heart failure"),
    Code("K80.200", "胆囊结石", "gallstones"),
    Code("S72.000", "股骨颈骨折", "fracture of neck of femur"),
    Code("K35.800", "急性阑尾炎", "acute appendicitis"),
    Code("I63.900", "脑梗死", "cerebral infarction"),
)
EMERGENCY_DIAGNOSES: tuple[Code, ...] = (
    Code("T14.900", "损伤", "injury"),
    Code("R10.400", "腹痛", "abdominal pain"),
    Code("R50.900", "发热", "fever"),
    Code("I20.000", "不稳定型心绞痛", "unstable angina"),
)
OUTBREAK_DIAGNOSIS = Code("U07.100", "新型冠状病毒感染", "COVID-19, virus identified")
RESPIRATORY_DIAGNOSIS = ACUTE_DIAGNOSES[0]
"""What a winter respiratory wave's fever-clinic visit is diagnosed with."""
FEVER_CLINIC = "发热门诊"
"""The fever clinic's department name (outbreak cases and the respiratory waves are seen there)."""

# Procedures (ICD-9-CM-3, the operation coding of Chinese hospitals' front sheets) by the stay's primary
# diagnosis: the operation a surgical diagnosis is admitted for, the imaging a medical one gets.
INPATIENT_PROCEDURES: dict[str, tuple[Code, ...]] = {
    "J18.900": (Code("87.41", "胸部CT检查", "computerized axial tomography of thorax"),),
    "I50.900": (Code("88.72", "心脏超声检查", "diagnostic ultrasound of heart"),),
    "K80.200": (Code("51.23", "腹腔镜下胆囊切除术", "laparoscopic cholecystectomy"),),
    "S72.000": (
        Code("81.52", "部分髋关节置换术", "partial hip replacement"),
        Code("79.35", "股骨骨折切开复位内固定术", "open reduction of femur fracture with internal fixation"),
    ),
    "K35.800": (Code("47.01", "腹腔镜下阑尾切除术", "laparoscopic appendectomy"),),
    "I63.900": (Code("87.03", "头部CT检查", "computerized axial tomography of head"),),
}
SURGICAL_DIAGNOSES = frozenset({"K80.200", "S72.000", "K35.800"})
"""Primary diagnoses whose stay has an operation (the others get imaging, not always)."""
ECG = Code("89.52", "心电图检查", "electrocardiogram")
OUTPATIENT_PROCEDURES: tuple[Code, ...] = (
    ECG,
    Code("87.44", "胸部X线检查", "routine chest x-ray"),
    Code("88.76", "腹部超声检查", "diagnostic ultrasound of abdomen and retroperitoneum"),
    Code("93.94", "雾化吸入治疗", "respiratory medication administered by nebulizer"),
)
EMERGENCY_PROCEDURES: tuple[Code, ...] = (
    ECG,
    Code("87.03", "头部CT检查", "computerized axial tomography of head"),
    Code("86.59", "皮肤缝合术", "closure of skin and subcutaneous tissue"),
    Code("88.76", "腹部超声检查", "diagnostic ultrasound of abdomen and retroperitoneum"),
)
FEVER_CLINIC_PROCEDURE = Code("87.41", "胸部CT检查", "computerized axial tomography of thorax")


class Allergen(NamedTuple):
    """A substance residents are allergic to: SNOMED CT substance code, display, FHIR category, reaction."""

    code: str
    display: str
    label: str
    category: str  # medication | food (FHIR AllergyIntolerance.category)
    reaction: str  # the usual manifestation, as the clinician writes it
    severity: str  # mild | moderate | severe (FHIR reaction.severity)


ALLERGENS: tuple[Allergen, ...] = (
    Allergen("764146007", "青霉素", "penicillin", "medication", "荨麻疹", "moderate"),
    Allergen("387406002", "磺胺类药物", "sulfonamide", "medication", "皮疹", "mild"),
    Allergen("387458008", "阿司匹林", "aspirin", "medication", "哮喘发作", "severe"),
    Allergen("762952008", "花生", "peanut", "food", "口唇水肿", "severe"),
    Allergen("102263004", "鸡蛋", "eggs", "food", "湿疹", "mild"),
    Allergen("3718001", "牛奶", "cow's milk", "food", "腹泻", "mild"),
)
ALLERGEN_WEIGHTS = (40, 15, 10, 10, 13, 12)  # drug allergy labels (penicillin first) outnumber food ones

DEPARTMENTS = {
    "AMB": ("内科", "外科", "儿科", "妇科", "全科", "中医科", "皮肤科", "耳鼻喉&头颈外科"),
    "EMER": ("急诊科",),
    "IMP": ("心内科", "呼吸内科", "普外科", "骨科", "神经内科", "内分泌科"),
}
WARDS = ("1病区", "2病区", "3病区", "5病区", "ICU")


class LabTest(NamedTuple):
    """A lab test or vital sign: LOINC code, local code, canonical unit, and an alternative unit.

    LOINC codes the quantity, not just the analyte: glucose in mmol/L is 14749-6 (moles/volume), in mg/dL
    2345-7 (mass/volume). A site reporting in the alternative unit sends ``alt_loinc``.
    """

    loinc: str
    local_code: str
    display: str
    unit: str
    alt_unit: str | None  # the unit some sites report in instead (None: always the canonical one)
    alt_factor: float  # value_in_alt_unit = value_in_unit * alt_factor
    category: str  # laboratory | vital-signs
    alt_loinc: str | None = None  # the LOINC code of the quantity in alt_unit (None: same as loinc)


LAB_TESTS: dict[str, LabTest] = {
    "glucose": LabTest("14749-6", "GLU", "葡萄糖", "mmol/L", "mg/dL", 18.016, "laboratory", "2345-7"),
    "hba1c": LabTest("4548-4", "HBA1C", "糖化血红蛋白", "%", None, 1.0, "laboratory"),
    "creatinine": LabTest("14682-9", "CREA", "肌酐", "umol/L", "mg/dL", 1 / 88.42, "laboratory", "2160-0"),
    "cholesterol": LabTest("14647-2", "TC", "总胆固醇", "mmol/L", "mg/dL", 38.67, "laboratory", "2093-3"),
    "wbc": LabTest("6690-2", "WBC", "白细胞计数", "10*9/L", None, 1.0, "laboratory"),
    "sbp": LabTest("8480-6", "SBP", "收缩压", "mm[Hg]", None, 1.0, "vital-signs"),
    "dbp": LabTest("8462-4", "DBP", "舒张压", "mm[Hg]", None, 1.0, "vital-signs"),
    "heart_rate": LabTest("8867-4", "HR", "心率", "/min", None, 1.0, "vital-signs"),
    "temperature": LabTest("8310-5", "TEMP", "体温", "Cel", None, 1.0, "vital-signs"),
}

# Drugs by indication: (local drug code, Chinese name, dose text).
DRUGS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "hypertension": (("D001", "苯磺酸氨氯地平片", "5mg qd"), ("D002", "缬沙坦胶囊", "80mg qd")),
    "diabetes": (("D010", "盐酸二甲双胍片", "0.5g tid"), ("D011", "阿卡波糖片", "50mg tid")),
    "copd": (("D020", "噻托溴铵粉吸入剂", "18ug qd"),),
    "chd": (("D030", "阿司匹林肠溶片", "100mg qd"), ("D031", "阿托伐他汀钙片", "20mg qn")),
    "stroke": (("D030", "阿司匹林肠溶片", "100mg qd"),),
    "infection": (("D040", "阿莫西林胶囊", "0.5g tid"), ("D041", "头孢克肟分散片", "0.1g bid")),
    "symptomatic": (("D050", "布洛芬缓释胶囊", "0.3g bid"), ("D051", "奥美拉唑肠溶胶囊", "20mg qd")),
}

# Vaccines given at vaccination sites: (code, Chinese name, age range in years).
VACCINES: tuple[tuple[str, str, int, int], ...] = (
    ("HepB", "乙肝疫苗", 0, 1),
    ("DTaP", "百白破疫苗", 0, 6),
    ("MMR", "麻腮风疫苗", 0, 6),
    ("IPV", "脊灰灭活疫苗", 0, 4),
    ("Flu", "流感疫苗", 60, 120),
    ("COVID19", "新冠病毒疫苗", 18, 120),
)

# Homophone pairs (same pinyin, tone ignored) that registration clerks type for one another.
HOMOPHONES: dict[str, tuple[str, ...]] = {
    "张": ("章",),
    "章": ("张",),
    "王": ("汪",),
    "汪": ("王",),
    "李": ("理", "里"),
    "刘": ("柳", "留"),
    "陈": ("晨", "沉"),
    "杨": ("阳", "扬"),
    "黄": ("皇", "凰"),
    "吴": ("武", "伍"),
    "赵": ("照",),
    "周": ("州", "舟"),
    "徐": ("许",),
    "许": ("徐",),
    "孙": ("荪",),
    "马": ("玛",),
    "朱": ("珠", "诸"),
    "胡": ("湖", "胡"),
    "郭": ("国",),
    "何": ("和", "河"),
    "林": ("琳", "霖"),
    "罗": ("萝",),
    "高": ("糕",),
    "郑": ("正",),
    "梁": ("良",),
    "宋": ("送",),
    "唐": ("堂",),
    "韩": ("寒",),
    "冯": ("凤",),
    "邓": ("登",),
    "曹": ("草",),
    "彭": ("鹏",),
    "曾": ("增",),
    "田": ("甜",),
    "伟": ("玮", "炜", "威"),
    "强": ("墙",),
    "磊": ("蕾", "垒"),
    "洋": ("阳", "杨"),
    "勇": ("永", "泳"),
    "军": ("君", "均"),
    "杰": ("洁", "捷"),
    "涛": ("滔", "韬"),
    "超": ("潮",),
    "明": ("铭", "鸣"),
    "刚": ("钢",),
    "平": ("萍", "苹"),
    "辉": ("晖", "徽"),
    "鹏": ("朋", "彭"),
    "华": ("桦", "骅"),
    "飞": ("菲", "非"),
    "鑫": ("新", "欣"),
    "波": ("博",),
    "斌": ("彬", "滨"),
    "宇": ("雨", "羽"),
    "浩": ("昊", "皓"),
    "凯": ("恺", "楷"),
    "健": ("建", "剑"),
    "俊": ("骏",),
    "宁": ("凝",),
    "芳": ("方", "芬"),
    "娜": ("纳",),
    "敏": ("民", "闽"),
    "静": ("晶", "婧"),
    "丽": ("莉", "力"),
    "艳": ("燕", "岩"),
    "娟": ("鹃",),
    "霞": ("侠",),
    "燕": ("艳",),
    "玲": ("琳", "铃"),
    "丹": ("单",),
    "萍": ("平",),
    "红": ("宏", "虹"),
    "英": ("瑛", "莹"),
    "梅": ("媒", "玫"),
    "莉": ("丽", "力"),
    "婷": ("庭", "亭"),
    "晶": ("静", "菁"),
    "颖": ("莹",),
    "雪": ("学",),
    "慧": ("惠", "蕙"),
    "兰": ("蓝", "岚"),
    "秀": ("琇",),
    "桂": ("贵",),
    "玉": ("钰", "育"),
    "珍": ("真", "贞"),
    "建": ("健",),
    "国": ("郭",),
    "志": ("智", "治"),
    "文": ("雯", "闻"),
}

# Characters that make up less common two-character given names.
GIVEN_NAME_CHARS = (
    "子梓浩宇轩然欣怡诗涵梦琪一诺雨泽思远晨阳文博嘉豪俊杰建华国庆海燕春梅志强秀云玉兰立新德明永红晓东丽娟"
    "爱华淑珍金凤树林广平振宇昊天佳怡婉清若曦家豪天佑景行书瑶亦菲卓然清扬锦程铭轩静怡可馨慧敏雅琴凤英"
)

# Township name pieces (村/镇/乡 names are built from these).
PLACE_CHARS = "东西南北青石白沙黄龙凤凰桃李梅花新兴太平长乐永安河塘山湾岭桥溪江湖仁和福寿金银"
