# frozen_string_literal: true

# A page rendered with Iodine::Mustache (compiled once, partials included):
#   bin/serve examples/mustache.ru     then open http://localhost:3000/?name=<b>you</b>

require "iodine"

VIEW = Iodine::Mustache.new(File.join(__dir__, "views", "page.mustache"))
ITEMS = [{ name: "compiled once", added: "at boot" }, { name: "escaped <html>", added: "by the engine" }].freeze

run lambda { |env|
  name = Rack::Utils.parse_query(env["QUERY_STRING"])["name"]
  items = name ? ITEMS + [{ name: name, added: "from the query string" }] : ITEMS
  html = VIEW.render(title: "Iodine::Mustache & friends", items: items)
  [200, { "Content-Type" => "text/html; charset=utf-8" }, [html]]
}
